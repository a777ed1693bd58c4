"""The device listener: the RFC 8572 RESTCONF API that devices call while they bootstrap.

- `southbound`: the aiohttp application, its routes and the two RPCs.
- `device_auth`: who the device is (IDevID client certificate, or HTTP Basic with a password).
- `password_logins`: what keeps Basic logins from being a way to guess passwords or to load
  the server (per-address and per-serial limits, a bounded worker pool).
- `responder`: the bootstrapping data a device's profile renders to, signed and cached.
- `report_limits`: bounds on what progress reports may store.
- `rate_limits`: the limits on failed logins and progress reports, as the settings make them.
- `token_buckets`: the rate limiter the logins and progress reports share, in one process;
  `shared_buckets`: the same in memory every server process shares.
"""

from .rate_limits import RateLimits
from .southbound import build_device_app

__all__ = ["RateLimits", "build_device_app"]
