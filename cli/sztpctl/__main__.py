"""`python -m sztpctl` runs the CLI."""

from . import main

main()
