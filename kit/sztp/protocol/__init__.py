"""Pure, byte-exact protocol code: conveyed information, CMS, vouchers, DHCP codecs, PKI.

Nothing in this package performs I/O; callers pass bytes and objects in and get bytes and
objects back. The server and the CLI both build on it.
"""
