"""Offline stand-in for the get-pip.py script that `ansible-test --venv` downloads.

ansible-test runs its cached get-pip script inside each new virtual environment with pip's
install arguments. The download host is out of reach here, so this script does the same job
with what Python ships: ensurepip installs the bundled pip, which then installs the requested
packages (e.g. the pinned pip release) from the configured package index.
"""

import ensurepip
import os
import subprocess
import sys

if __name__ == "__main__":
    ensurepip.bootstrap(upgrade=True)
    # ensurepip hides pip's configuration from itself (PIP_CONFIG_FILE=/dev/null) and leaves
    # that in our environment; the real install must see the machine's index and CA settings.
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("PIP_CONFIG_FILE", "ENSUREPIP_OPTIONS")
    }
    arguments = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
    command = [sys.executable, "-m", "pip", "install", *arguments]
    sys.exit(subprocess.call(command, env=environment))
