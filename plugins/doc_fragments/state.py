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
    after the server's normalisation (canonical PEM, lower-case hashes and MACs).
  - In check mode only, when the server refuses the dry run solely because the resource refers
    to one it does not have (a device's profile, a profile's image or owner), the module
    assumes an earlier task of the same run creates it (that task ran as a dry run too), so it
    warns, naming the missing resource, and reports a change with the diff of the values as
    given. A real run fails if the resource still does not exist. Any other refusal fails in
    check mode as well.
  - Diffs come from the server's plan with secrets shown as C(<hidden>).
"""
