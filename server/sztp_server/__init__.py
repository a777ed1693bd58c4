"""sztp-server: the open RFC 8572 bootstrap server."""

__version__ = "0.1.0"
