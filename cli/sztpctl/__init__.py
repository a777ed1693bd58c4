"""sztpctl: the admin kit and CLI for secure zero touch provisioning (RFC 8572).

Keep this module free of heavy imports: `sztpctl --help` must start fast.
"""

__version__ = "0.1.0"
