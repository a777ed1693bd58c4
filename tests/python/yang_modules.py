"""The official IETF YANG modules under tests/data/yang and a yangson data model built on them.

yangson ignores RESTCONF's `yang-data` extension (RFC 8040 §8), so a module's `yang-data`
template defines no data for it; `data_model` lets a test turn one statement into something
yangson validates (a top-level container, a `uses`) in a copy made in a temporary directory.
The checked-in files stay byte for byte as published.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

YANG_DIR = Path(__file__).resolve().parents[1] / "data" / "yang"
_YANG_TYPES_NS = "urn:ietf:params:xml:ns:yang:ietf-yang-types"
_INET_TYPES_NS = "urn:ietf:params:xml:ns:yang:ietf-inet-types"


@dataclass(frozen=True)
class Module:
    name: str
    revision: str
    namespace: str
    rfc: int
    sha256: str  # of the published text: a changed byte is a changed module

    @property
    def file_name(self) -> str:
        return f"{self.name}@{self.revision}.yang"

    @property
    def path(self) -> Path:
        return YANG_DIR / self.file_name

    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    def digest(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


BOOTSTRAP_SERVER = Module(
    "ietf-sztp-bootstrap-server",
    "2019-04-30",
    "urn:ietf:params:xml:ns:yang:ietf-sztp-bootstrap-server",
    8572,
    "4af241e8933496a78b67570fc496062840b224548d12ee8c7a66f6e09bb280a5",
)
CONVEYED_INFO = Module(
    "ietf-sztp-conveyed-info",
    "2019-04-30",
    "urn:ietf:params:xml:ns:yang:ietf-sztp-conveyed-info",
    8572,
    "649120c7877e1c13ba6c3edf62d12d9be0479a71b34d7268c841580254253093",
)
VOUCHER = Module(
    "ietf-voucher",
    "2018-05-09",
    "urn:ietf:params:xml:ns:yang:ietf-voucher",
    8366,
    "f7eafe0caaafc065d54ce95a7b28d668449cc5571ab46a58da7042664ccfe383",
)
RESTCONF = Module(
    "ietf-restconf",
    "2017-01-26",
    "urn:ietf:params:xml:ns:yang:ietf-restconf",
    8040,
    "e757021148926cc9b39b593598a2bd8f212423c68ea1cbb1ed1b65532d091297",
)
INET_TYPES = Module(
    "ietf-inet-types",
    "2013-07-15",
    _INET_TYPES_NS,
    6991,
    "12d98b0143a5ca5095b36420f9ebc1ffa61cfd2eaa850080244cadf01b86ddf9",
)
YANG_TYPES = Module(
    "ietf-yang-types",
    "2013-07-15",
    _YANG_TYPES_NS,
    6991,
    "a04cdcc875764a76e89b7a0200c6b9d800b10713978093acda7840c7c2907c3f",
)
MODULES = (BOOTSTRAP_SERVER, CONVEYED_INFO, VOUCHER, RESTCONF, INET_TYPES, YANG_TYPES)


def data_model(
    directory: Path,
    implemented: tuple[Module, ...],
    imported: tuple[Module, ...],
    derive: tuple[Module, str, str] | None = None,
    features: dict[Module, tuple[str, ...]] | None = None,
) -> object:
    """A yangson DataModel of the `implemented` modules (with their `features`) and the
    `imported` ones, copied into `directory`.

    `derive` = (module, statement, replacement): that module's copy has the one occurrence of
    `statement` replaced, and the test fails if the statement is not there exactly once.
    """
    yangson = pytest.importorskip("yangson", reason="yangson (a dev dependency) is not installed")
    features = features or {}
    modules = (*implemented, *imported)
    for module in modules:
        text = module.text()
        if derive is not None and derive[0] == module:
            _, statement, replacement = derive
            assert text.count(statement) == 1, f"{module.file_name}: {statement!r} has changed"
            text = text.replace(statement, replacement)
        (directory / module.file_name).write_text(text, encoding="utf-8")
    library = {
        "ietf-yang-library:modules-state": {
            "module-set-id": "sztp-test-" + "-".join(module.name for module in implemented),
            "module": [
                {
                    "name": module.name,
                    "revision": module.revision,
                    "namespace": module.namespace,
                    "conformance-type": "implement" if module in implemented else "import",
                    **({"feature": list(features[module])} if module in features else {}),
                }
                for module in modules
            ],
        }
    }
    return yangson.DataModel(json.dumps(library), [str(directory)])
