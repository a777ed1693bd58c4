"""`python -m sztpctl.commands` runs the CLI (used by the start-up benchmark)."""

from . import main

main()
