"""A minimal HTTPS static file server for the demo (production uses the file_server role).

python scripts/https_file_server.py DIRECTORY PORT CERT KEY
"""

from __future__ import annotations

import functools
import http.server
import ssl
import sys


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep the demo output to what the demo prints."""


def main() -> None:
    directory, port, certificate, key = sys.argv[1:5]
    handler = functools.partial(_QuietHandler, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
