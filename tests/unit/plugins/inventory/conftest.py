"""Plugins (unlike modules) are loaded through Ansible's plugin loader, which needs Ansible's
collection finder. ansible-test installs it; under plain pytest it is installed here, on the
first sys.path entry that holds ansible_collections/sztp/bootstrap. It must be installed
before anything under ansible_collections is imported, so modules already imported as plain
namespace packages are forgotten first.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ansible.utils.collection_loader import AnsibleCollectionConfig
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

if AnsibleCollectionConfig.collection_finder is None:
    _roots = [
        entry
        for entry in sys.path
        if entry and (Path(entry) / "ansible_collections" / "sztp" / "bootstrap").is_dir()
    ]
    for _name in [name for name in sys.modules if name.startswith("ansible_collections")]:
        del sys.modules[_name]
    _AnsibleCollectionFinder(paths=_roots[:1])._install()
