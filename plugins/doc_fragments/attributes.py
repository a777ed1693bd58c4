# Copyright: sztp developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations


class ModuleDocFragment:
    # With sztp.bootstrap.connection (check mode, platform): a module that changes the server's
    # state, its diff taken from the server's plan.
    DOCUMENTATION = r"""
attributes:
  diff_mode:
    support: full
"""

    # A module that only reads: check mode changes nothing it does, and it has no diff.
    INFO_MODULE = r"""
attributes:
  diff_mode:
    support: none
"""
