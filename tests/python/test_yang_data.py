"""The IETF YANG modules the conformance tests validate against: in the repository, unmodified."""

from __future__ import annotations

import re

import pytest

import yang_modules

README = yang_modules.YANG_DIR / "README.md"


@pytest.mark.parametrize("module", yang_modules.MODULES, ids=lambda module: module.name)
def test_module_is_the_published_text(module: yang_modules.Module) -> None:
    assert module.path.is_file(), f"{module.path} is missing"
    assert module.digest() == module.sha256, f"{module.file_name} differs from the published text"
    header = re.search(r"^module (\S+) \{", module.text(), re.MULTILINE)
    assert header is not None
    assert header.group(1) == module.name
    # RFC 8341 quotes its revision dates, the others do not.
    assert re.search(rf'^  revision "?{module.revision}"? {{', module.text(), re.MULTILINE)
    assert f'namespace "{module.namespace}";' in module.text()


def test_the_folder_holds_exactly_the_listed_modules() -> None:
    present = {path.name for path in yang_modules.YANG_DIR.glob("*.yang")}
    assert present == {module.file_name for module in yang_modules.MODULES}


@pytest.mark.parametrize("module", yang_modules.MODULES, ids=lambda module: module.name)
def test_readme_names_each_module_with_its_rfc(module: yang_modules.Module) -> None:
    row = next(
        (
            line
            for line in README.read_text(encoding="utf-8").splitlines()
            if module.file_name in line
        ),
        None,
    )
    assert row is not None, f"README.md does not list {module.file_name}"
    assert f"RFC {module.rfc}" in row


def test_readme_states_the_licence() -> None:
    text = README.read_text(encoding="utf-8")
    assert "Simplified BSD License" in text
    assert "IETF Trust" in text
