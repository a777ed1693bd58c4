"""The admin API under `/api/v1`: resources, bulk desired state, status, audit and tokens.

Decisions worth knowing as a client:

- Authentication: `Authorization: Bearer <token>` on every route except `GET /healthz` (for
  load balancers) and `GET /api/v1/openapi.json` (the document holds no data). A `read-only`
  token may only read (GET/HEAD); everything else needs an `admin` token.
- Every error is JSON: `{"error": {"code": ..., "message": ..., "field": ...?}}`. Bad input is
  always a 4xx and leaves the stored state unchanged.
- The ETag is the revision of the whole state (`"<revision>"`): every resource and bulk
  response carries it, and every write honours `If-Match` (412 when the state has moved on).
  Without `If-Match`, writes made concurrently on this instance are serialised, and a write
  that races another instance is recomputed on the new state.
- `POST /api/v1/state` answers with the plan: every change with its whole before and after
  by default, or with `?plan=summary` only the names of the fields it touches (and, for an
  update, their old and new values), which keeps the answer small for a large fleet.
- Secrets never leave the server: an owner's `private_key` and a device's `password_hash` are
  shown as `"<hidden>"`. Sending `"<hidden>"` back in a write keeps the stored secret, so
  `GET /state` followed by `POST /state` with the same document changes nothing.

Where things are: `routes` builds the application (middlewares and route table); `auth` checks
tokens; `errors` turns every failure into a JSON error; `requests` reads bodies and query
parameters; `handlers/` answers the routes, one module a concern; `writes` holds every write
as a value that computes its changes (normalise, plan, check); `writer` runs them, one at a
time, in a process of its own that commits them with their audit entries, so the process
serving devices never does that work; `service` hands writes to it and serves the revision
they make; `vouchers` checks a large apply's vouchers in worker processes; `views` is what the
API shows of stored things; `openapi/` is the OpenAPI document served at `GET /api/v1/openapi.json`.
"""

from .routes import build_admin_app

__all__ = ["build_admin_app"]
