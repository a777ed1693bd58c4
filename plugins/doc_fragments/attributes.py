# Copyright: sztp developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations


class ModuleDocFragment:
    # Every module talks to the server over HTTPS from any POSIX host.
    DOCUMENTATION = r"""
attributes:
  platform:
    platforms: posix
"""

    # A module that only reads: check mode changes nothing it does, and it has no diff.
    INFO_MODULE = r"""
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""
