"""sztpctl: the admin CLI for secure zero touch provisioning (RFC 8572), on the sztp kit.

Keep this module free of heavy imports: `sztpctl --help` must start fast.
"""


def main() -> None:
    """The `sztpctl` console script: the CLI, or the install command when its extra is missing."""
    from sztp.extras import require_extra

    require_extra("cli", "sztpctl")
    from .commands import main as run

    run()
