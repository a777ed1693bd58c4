"""sztp-server: the open RFC 8572 bootstrap server."""
