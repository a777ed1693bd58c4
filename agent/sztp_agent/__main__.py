"""`python -m sztp_agent` is `ztp`."""

import sys

from .cli import main

sys.exit(main())
