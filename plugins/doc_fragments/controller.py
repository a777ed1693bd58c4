# Copyright: sztp developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations


class ModuleDocFragment:
    # A plugin that runs on the controller (filters, the inventory plugin) and uses the kit
    # there. ansible-core wants options or attributes in every fragment: this one adds none.
    DOCUMENTATION = r"""
options: {}
requirements:
  - the C(sztp) Python package (the sztp kit, without extras) on the controller
"""
