"""The official IETF YANG modules under tests/data/yang and a yangson data model built on them.

yangson ignores the extensions that define data outside the datastore, RESTCONF's `yang-data`
(RFC 8040 §8) and RFC 8791's `sx:structure`, so a module's template or structure defines no
data for it; `data_model` lets a test turn such statements into something yangson validates
(a top-level container, a `uses`) in a copy made in a temporary directory. The checked-in
files stay byte for byte as published.
"""

from __future__ import annotations

import hashlib
import io
import json
import xml.etree.ElementTree as ET
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
SZTP_CSR = Module(
    "ietf-sztp-csr",
    "2024-10-10",
    "urn:ietf:params:xml:ns:yang:ietf-sztp-csr",
    9646,
    "a82c02e5b46bae9497900e5d265369e450e05e87ae2acc49940ae7eb54eda9b3",
)
ZTP_TYPES = Module(
    "ietf-ztp-types",
    "2024-10-10",
    "urn:ietf:params:xml:ns:yang:ietf-ztp-types",
    9646,
    "76728621472ab94933b706d7d9795859cf89b3c7d2767a03817a8a2f13daf42d",
)
CRYPTO_TYPES = Module(
    "ietf-crypto-types",
    "2024-10-10",
    "urn:ietf:params:xml:ns:yang:ietf-crypto-types",
    9640,
    "0db2e047a4e67f4356e151bbb985c05013539a59813569f190c13415f07974f1",
)
NETCONF_ACM = Module(
    "ietf-netconf-acm",
    "2018-02-14",
    "urn:ietf:params:xml:ns:yang:ietf-netconf-acm",
    8341,
    "e03f91317f9538a89296e99df3ff0c4003cdfea70bf517407643b3ec13c1ed25",
)
STRUCTURE_EXT = Module(
    "ietf-yang-structure-ext",
    "2020-06-17",
    "urn:ietf:params:xml:ns:yang:ietf-yang-structure-ext",
    8791,
    "4c8c3a3907163460fefb31d45e3f21ea2c6e9d674d9144259b858364bc77399b",
)
MODULES = (
    BOOTSTRAP_SERVER,
    CONVEYED_INFO,
    VOUCHER,
    RESTCONF,
    INET_TYPES,
    YANG_TYPES,
    SZTP_CSR,
    ZTP_TYPES,
    CRYPTO_TYPES,
    NETCONF_ACM,
    STRUCTURE_EXT,
)

# (module, statement, replacement): in the module's copy, `statement` becomes `replacement`.
Derivation = tuple[Module, str, str]


def data_model(
    directory: Path,
    implemented: tuple[Module, ...],
    imported: tuple[Module, ...],
    derive: tuple[Derivation, ...] = (),
    features: dict[Module, tuple[str, ...]] | None = None,
) -> object:
    """A yangson DataModel of the `implemented` modules (with their `features`) and the
    `imported` ones, copied into `directory`.

    Each of `derive`, (module, statement, replacement), replaces the one occurrence of
    `statement` in that module's copy; the test fails if the statement is not there exactly once.
    """
    yangson = pytest.importorskip("yangson", reason="yangson (a dev dependency) is not installed")
    features = features or {}
    modules = (*implemented, *imported)
    for module in modules:
        text = module.text()
        for derived, statement, replacement in derive:
            if derived == module:
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


def xml_for_yangson(document: bytes) -> ET.Element:
    """`document` parsed, each element's in-scope prefixes copied into its attributes as
    `xmlns:prefix`.

    ElementTree drops namespace declarations, and yangson looks up the prefix of an identityref
    value among its element's attributes (yangson issue #79): with them there, yangson resolves
    the prefix through the namespace it is bound to (RFC 7950 §9.10.3), whatever the prefix.
    """
    scopes: list[dict[str, str]] = [{}]
    declared: dict[str, str] = {}
    root: ET.Element | None = None
    events = ("start-ns", "start", "end")
    for event, item in ET.iterparse(io.BytesIO(document), events):  # noqa: S314 - test data
        if event == "start-ns":
            prefix, namespace = item
            declared[prefix] = namespace
        elif event == "start":
            scope = {**scopes[-1], **declared}
            declared = {}
            scopes.append(scope)
            for prefix, namespace in scope.items():
                if prefix:
                    item.set(f"xmlns:{prefix}", namespace)
            if root is None:
                root = item
        else:
            scopes.pop()
    assert root is not None
    return root
