// The admin API reference: Swagger UI (the script served beside this one) showing this server's
// OpenAPI document. A file of its own, as the page's Content-Security-Policy runs no inline
// script. The page is /api/v1/docs, so "openapi.json" is /api/v1/openapi.json.
"use strict";

SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  // The plain layout: the standalone one adds a box for loading any other document.
  layout: "BaseLayout",
  deepLinking: true,
  // Nothing is sent elsewhere: by default Swagger UI may ask an online validator.
  validatorUrl: null,
  // The query string cannot point the page at another document or configuration.
  queryConfigEnabled: false,
});
