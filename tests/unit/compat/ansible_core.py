"""What the unit tests need from ansible-core, on every release the collection declares
(requires_ansible in meta/runtime.yml): 2.19 added the testing helpers below; on the releases
before it the same effect takes older means (tests/ansible/run-matrix.sh runs them all)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest

try:  # ansible-core 2.19 and later
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # 2.16 to 2.18: AnsibleModule reads its arguments from basic._ANSIBLE_ARGS
    from ansible.module_utils import basic

    @contextlib.contextmanager
    def patch_module_args(args: dict[str, Any] | None = None) -> Iterator[None]:
        """Expose `args` to the AnsibleModule instances created within this context."""
        serialized = json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}).encode()
        with mock.patch.object(basic, "_ANSIBLE_ARGS", serialized):
            yield


try:  # ansible-core 2.19 and later (data tagging): a string is a template only if trusted
    from ansible.template import trust_as_template
except ImportError:  # 2.16 to 2.18: every string not marked unsafe is a template

    def trust_as_template(value: str) -> str:
        return value


def run_as_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """Module code in a process that also runs controller code: from 2.19 on, controller-side
    tests (the inventory plugin's) flip a flag that sends module warnings to the controller's
    display instead of the result; before 2.19 there is no such flag."""
    try:
        from ansible.module_utils import _internal
    except ImportError:  # 2.16 and 2.17
        return
    if hasattr(_internal, "is_controller"):  # not on 2.18
        monkeypatch.setattr(_internal, "is_controller", False)


__all__ = ["patch_module_args", "run_as_module", "trust_as_template"]
