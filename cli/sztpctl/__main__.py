"""`python -m sztpctl` runs the CLI."""

from .commands import main

main()
