# Copyright: sztp developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The sztp kit (the `sztp` Python package) that every plugin of this collection imports, and
the releases of it this collection works with: its own major.minor, since the two are released
together and the kit's API may change between minor releases (0.x)."""

from __future__ import annotations

import re

# Kept equal to galaxy.yml's version's major.minor by the project's tests.
KIT_RELEASE = (0, 1)
INSTALL_HINT = (
    "install the sztp Python package of the same release as this collection in the Python "
    "that runs Ansible (docs/collection.md, Installation)"
)

try:
    from sztp import __version__ as KIT_VERSION
except ImportError as exc:
    KIT_VERSION = None
    KIT_IMPORT_ERROR = str(exc)
else:
    KIT_IMPORT_ERROR = None


def kit_problem():
    """None when a usable kit is importable; else one line saying what is wrong and what to do."""
    if KIT_VERSION is None:
        return "the sztp Python package is missing (%s): %s" % (KIT_IMPORT_ERROR, INSTALL_HINT)
    found = tuple(int(part) for part in re.findall(r"\d+", KIT_VERSION)[:2])
    if found != KIT_RELEASE:
        return "sztp %s is installed, but this collection needs sztp %d.%d.x: %s" % (
            KIT_VERSION,
            KIT_RELEASE[0],
            KIT_RELEASE[1],
            INSTALL_HINT,
        )
    return None
