"""`sztp-mdns`: answer mDNS queries for the records of RFC 8572 §4.2 under `.local`.

A small service of its own rather than a part of `sztp-server`: one process per host owns the
mDNS sockets (the server runs several worker processes and may run on another host than the
link's devices), and it needs neither the database nor the server's configuration, only a
zone fragment. See docs/mdns.md.
"""
