# Copyright: sztp developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations


class ModuleDocFragment:
    # How a single-resource module treats the options it is given, and its diff (check mode and
    # the platform come with sztp.bootstrap.connection).
    DOCUMENTATION = r"""
attributes:
  diff_mode:
    support: full
options:
  state:
    description:
      - V(present) creates the resource or updates it to match the options given.
      - V(absent) deletes it; the server refuses to delete a resource others still refer to.
    type: str
    choices: [present, absent]
    default: present
notes:
  - Options left out keep the value stored on the server; an empty string clears an optional
    text option.
  - Check mode asks the server for a dry run of the change, so it reports what would change
    after the server's normalisation (canonical PEM, lower-case hashes and MACs). When the
    resource refers to one that an earlier task would create, the dry run cannot check the
    reference, so the module warns and reports a change.
  - Diffs come from the server's plan with secrets shown as C(<hidden>).
"""
