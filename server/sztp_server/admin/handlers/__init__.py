"""The admin API's request handlers, one module a concern: `resources` (the collections),
`devices` (voucher, status, progress; fleet status), `state` (the bulk desired state),
`audit`, `tokens`, `public` (health check and OpenAPI document, open without a token) and
`api_reference` (the OpenAPI document in Swagger UI, open too)."""
