"""The container's health check: the server's own /healthz answers 200.

Usage: sztp-healthcheck [CONFIG]. The listener is found from the server's configuration as the
container gives it (CONFIG, then the `SZTP_SERVER_*` variables): the first device listener when
it serves /healthz (`monitoring_listeners`: device or both), else the admin listener. A wildcard
address is asked on loopback. TLS is not verified: this is the container asking its own process
whether it is alive, not a client trusting a server.
"""

import ssl
import sys
import urllib.request
from pathlib import Path

from sztp.errors import ValidationError
from sztp_server.config import load_config

LOOPBACK_FOR = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104

try:
    config = load_config(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
except ValidationError as exc:
    print(f"configuration: {exc}", file=sys.stderr)
    sys.exit(1)
serves_health = config.monitoring_listeners in ("device", "both")
listener = config.device_listeners[0] if serves_health else config.admin_listener
host = LOOPBACK_FOR.get(listener.host, listener.host)
scheme = "https" if listener.uses_tls else "http"
url = f"{scheme}://{f'[{host}]' if ':' in host else host}:{listener.port}/healthz"
context = None
if listener.uses_tls:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
try:
    with urllib.request.urlopen(url, timeout=2, context=context) as answer:  # noqa: S310
        sys.exit(0 if answer.status == 200 else 1)
except OSError as exc:
    print(f"{url}: {exc}", file=sys.stderr)
    sys.exit(1)
