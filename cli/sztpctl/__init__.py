"""sztpctl: the admin CLI for secure zero touch provisioning (RFC 8572), on the sztp kit.

Keep this module free of heavy imports: `sztpctl --help` must start fast.
"""

import sys


def main() -> None:
    """The `sztpctl` console script: the CLI, or the install command when its extra is missing."""
    from sztp.extras import missing_extra

    problem = missing_extra("cli", "sztpctl")
    if problem:
        print(problem, file=sys.stderr)
        raise SystemExit(1)
    from .commands import main as run

    run()
