"""A schema-driven codec for YANG instance documents in JSON (RFC 7951) and XML (RFC 7950 §7),
shared by the RESTCONF messages (`restconf`) and the conveyed information (`conveyed_info`).

A schema is a tree of `Container`, `List`, `LeafList` and `Leaf`; a decoded document is a
`Tree`: dicts keyed by member name (a member from another module is named `module:name`, as in
JSON), lists, and leaf values: str (string; identityref and instance-identifier in their JSON
form, `module:identity`), bytes (binary), int (uint16), True (empty leaf, opaque node). A
container marked `anydata` reads the members its schema names and skips all others.

Encoders write deterministic bytes: members in schema order; JSON compact and ASCII only; XML
UTF-8 without declaration or whitespace between elements. Decoders treat their input as
untrusted: anything wrong raises `ValidationError` whose `field` is the path of the offending
node, list entries numbered from 1. XML children may come in any order, with insignificant
whitespace between them.
"""

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element

from ..errors import ValidationError
from . import strict_json, strict_xml

# Characters a YANG string may hold (XML 1.0 characters); also rejects lone surrogates, which
# JSON escapes can produce, and NUL, which no database text column stores.
NON_XML_CHARACTER = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# The characters an inet:uri (RFC 3986) may hold, percent-escapes included.
URI_CHARACTERS = re.compile(r"[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+")
# Module-name prefixes of an instance-identifier in JSON form (RFC 7951 §6.11).
_PATH_MODULE = re.compile(r"/([A-Za-z_][A-Za-z0-9_.-]*):")
# The module qualifying a step of a node's path (`module:name`), as in JSON member names.
_STEP_MODULE = re.compile(r"(?:^|/)([A-Za-z_][A-Za-z0-9_.-]*):")
# RFC 7950 §9.2.1 lexical form of an unsigned integer; at most ten digits keeps int() cheap.
_XML_UNSIGNED = re.compile(r"\+?[0-9]{1,10}")
_UINT16_MAX = 65535


class Leaf(enum.Enum):
    STRING = "string"
    EMPTY = "empty"
    BINARY = "binary"
    UINT16 = "uint16"
    # Decoded to its JSON form `module:identity` (`{namespace}identity` from XML when the
    # namespace is of no known module); written in XML with the document's prefix, or for an
    # identity of one of `Document.identity_modules` with that module's name as the prefix.
    IDENTITYREF = "identityref"
    # An instance-identifier, kept in its JSON form (module names as prefixes).
    PATH = "instance-identifier"
    # anydata, or a container accepted without reading it; only its presence is recorded.
    OPAQUE = "opaque"


@dataclass(frozen=True)
class Container:
    """A container, or the entry of a list."""

    # Member names in schema order; a member from another module is qualified `module:name`.
    members: Mapping[str, "Schema"]
    mandatory: tuple[str, ...] = ()
    # A list entry's key leaves: mandatory too, and reported as the key when missing.
    key: tuple[str, ...] = ()
    # An anydata node (RFC 7950 §7.10) of which only `members` are understood: any other
    # member, and in XML any text or attribute, is skipped, so content from other modules
    # passes while the members named here are held to their schema.
    anydata: bool = False


@dataclass(frozen=True)
class List:
    entry: Container
    # False for a list that can validly hold one entry only: its paths then carry no `[n]`.
    numbered: bool = True


@dataclass(frozen=True)
class LeafList:
    leaf: Leaf


Schema = Leaf | Container | List | LeafList
Tree = dict[str, Any]


@dataclass(frozen=True)
class Document:
    """A kind of instance document of `module`: one top-level container, or a choice between
    several (the choice of a yang-data template, RFC 8040 §8)."""

    module: str
    # Module name -> namespace, for every module whose nodes the document may hold.
    namespaces: Mapping[str, str]
    # The field of errors about the document as a whole (size, syntax, top-level node).
    path: str
    roots: Mapping[str, Container]
    max_size: int
    # None: the size limit alone bounds the number of XML elements.
    max_elements: int | None = None
    # Paths of nodes start `module:top` (instance-identifier style), else `top`.
    qualified_paths: bool = True
    # RFC 8040 §3.6.1: an RPC request without input has no body.
    empty_body_allowed: bool = False
    # An element without content is written `<a/>`, else `<a></a>`.
    short_empty_elements: bool = True
    # The XML prefix of `module` in identityref values, declared on the top-level element
    # when its subtree has identityref leaves; "" declares it on each leaf instead, as below.
    prefix: str = ""
    # Other modules (of `namespaces`) whose identities identityref leaves may hold. In XML the
    # module name is their prefix, declared on the leaf, as for instance-identifiers.
    identity_modules: tuple[str, ...] = ()

    @property
    def namespace(self) -> str:
        return self.namespaces[self.module]

    def root_path(self, name: str) -> str:
        return f"{self.module}:{name}" if self.qualified_paths else name


def check_text(value: str, path: str) -> None:
    if NON_XML_CHARACTER.search(value):
        raise ValidationError(path, "contains a control character or an unpaired surrogate")


def json_string(value: object, path: str) -> str:
    text = strict_json.string(value, path)
    check_text(text, path)
    return text


def _check_mandatory(tree: Tree, schema: Container, path: str) -> None:
    for name in schema.key:
        if name not in tree:
            raise ValidationError(f"{path}/{name}", "missing (it is the list key)")
    for name in schema.mandatory:
        if name not in tree:
            raise ValidationError(f"{path}/{name}", "missing (it is mandatory)")


def _no_body(document: Document) -> tuple[str, Tree]:
    # Only an RPC input may be absent, and it is its document's one top-level node.
    ((name, schema),) = document.roots.items()
    tree: Tree = {}
    _check_mandatory(tree, schema, document.root_path(name))
    return name, tree


def _entry_path(kind: List, path: str, index: int) -> str:
    return f"{path}[{index}]" if kind.numbered else path


def _uint16(value: int, path: str) -> int:
    if not 0 <= value <= _UINT16_MAX:
        raise ValidationError(path, f"must be an integer 0..{_UINT16_MAX}, not {value}")
    return value


# --------------------------------------------------------------------------- JSON


def decode_json(body: bytes, document: Document) -> tuple[str, Tree]:
    """The name and content of the top-level container of a JSON `document`."""
    if not body and document.empty_body_allowed:
        return _no_body(document)
    text = strict_json.document_text(body, document.path, document.max_size)
    name, members = _json_root(strict_json.loads(text, document.path), document)
    return name, _json_members(members, document.roots[name], document.root_path(name), document)


def _json_root(value: object, document: Document) -> tuple[str, object]:
    """The top-level container's name and JSON value."""
    # RFC 7951 §4: a top-level member name is always qualified with its module.
    names = {f"{document.module}:{name}": name for name in document.roots}
    if len(names) == 1:
        (member,) = names
        if not isinstance(value, dict) or list(value) != [member]:
            raise ValidationError(
                document.path, f"must be a JSON object with the single member {member!r}"
            )
        return names[member], value[member]
    if not isinstance(value, dict):
        raise ValidationError(
            document.path, f"must be a JSON object, not {strict_json.type_name(value)}"
        )
    for member in value:
        if member not in names:
            expected = f"{document.module}:" + " or :".join(document.roots)
            raise ValidationError(member, f"unknown top-level member; expected {expected}")
    if len(value) != 1:
        raise ValidationError(
            document.path, f"must hold exactly one of {' and '.join(document.roots)}"
        )
    ((member, members),) = value.items()
    return names[member], members


def _json_members(value: object, schema: Container, path: str, document: Document) -> Tree:
    if not isinstance(value, dict):
        raise ValidationError(path, f"must be a JSON object, not {strict_json.type_name(value)}")
    tree: Tree = {}
    for name, member in value.items():
        kind = schema.members.get(name)
        if kind is None:
            if schema.anydata:
                continue
            raise ValidationError(f"{path}/{name}", "unknown member")
        tree[name] = _json_node(member, kind, f"{path}/{name}", document)
    _check_mandatory(tree, schema, path)
    return tree


def _json_node(value: object, kind: Schema, path: str, document: Document) -> Any:
    if isinstance(kind, Container):
        return _json_members(value, kind, path, document)
    if isinstance(kind, List):
        return [
            _json_members(entry, kind.entry, _entry_path(kind, path, index), document)
            for index, entry in enumerate(strict_json.array(value, path), start=1)
        ]
    if isinstance(kind, LeafList):
        return [
            _json_leaf(item, kind.leaf, f"{path}[{index}]", document)
            for index, item in enumerate(strict_json.array(value, path), start=1)
        ]
    return _json_leaf(value, kind, path, document)


def _json_leaf(value: object, leaf: Leaf, path: str, document: Document) -> Any:
    if leaf is Leaf.EMPTY:
        # RFC 7951 §6.9: the only value of an empty leaf is [null].
        if not (isinstance(value, list) and len(value) == 1 and value[0] is None):
            raise ValidationError(path, "an empty leaf is written [null]")
        return True
    if leaf is Leaf.OPAQUE:
        if not isinstance(value, dict):
            raise ValidationError(
                path, f"must be a JSON object, not {strict_json.type_name(value)}"
            )
        return True
    if leaf is Leaf.UINT16:
        # RFC 7951 §6.1: a JSON number; Python's bool is an int, so exclude it.
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValidationError(
                path, f"must be a JSON integer, not {strict_json.type_name(value)}"
            )
        return _uint16(value, path)
    text = json_string(value, path)
    if leaf is Leaf.BINARY:
        return strict_json.decode_base64(text, path)
    if leaf is Leaf.IDENTITYREF and ":" not in text:
        # RFC 7951 §6.8: an identity of the leaf's own module may be written without its
        # module name; the leaf's module is the last one its path names (JSON member names).
        modules = _STEP_MODULE.findall(path)
        return f"{modules[-1] if modules else document.module}:{text}"
    return text


def encode_json(name: str, tree: Tree, document: Document) -> bytes:
    """The JSON document whose top-level container `name` holds `tree`."""
    members = _json_tree(tree, document.roots[name], document.root_path(name))
    return json.dumps(
        {f"{document.module}:{name}": members}, separators=(",", ":"), ensure_ascii=True
    ).encode("ascii")


def _json_tree(tree: Tree, schema: Container, path: str) -> dict[str, object]:
    members: dict[str, object] = {}
    for name, kind in schema.members.items():
        if name in tree:
            members[name] = _json_value(tree[name], kind, f"{path}/{name}")
    return members


def _json_value(value: Any, kind: Schema, path: str) -> object:
    if isinstance(kind, Container):
        return _json_tree(value, kind, path)
    if isinstance(kind, List):
        return [_json_tree(entry, kind.entry, path) for entry in value]
    if isinstance(kind, LeafList):
        return [_json_leaf_value(item, kind.leaf, path) for item in value]
    return _json_leaf_value(value, kind, path)


def _json_leaf_value(value: Any, leaf: Leaf, path: str) -> object:
    if leaf is Leaf.EMPTY:
        return [None]
    if leaf is Leaf.OPAQUE:
        return {}
    if leaf is Leaf.BINARY:
        return strict_json.encode_base64(value)
    if leaf is Leaf.UINT16:
        return value
    check_text(value, path)
    return value


# --------------------------------------------------------------------------- XML


def decode_xml(body: bytes, document: Document) -> tuple[str, Tree]:
    """The name and content of the top-level element of an XML `document`; DTDs refused."""
    if not body and document.empty_body_allowed:
        return _no_body(document)
    # The builder records each element's in-scope namespaces, to resolve identityref prefixes.
    builder = strict_xml.ScopedTreeBuilder(
        document.path, document.max_elements or document.max_size
    )
    root = strict_xml.parse(body, document.path, document.max_size, target=builder)
    name = _xml_root(root, document)
    reader = _XmlReader(document, builder.scopes)
    return name, reader.members(root, document.roots[name], document.root_path(name))


def _xml_root(root: Element, document: Document) -> str:
    namespace, name = strict_xml.split_tag(root.tag)
    if len(document.roots) == 1:
        (expected,) = document.roots
        if root.tag != f"{{{document.namespace}}}{expected}":
            raise ValidationError(
                document.path,
                f'top-level element must be <{expected} xmlns="{document.namespace}">, '
                f"not {root.tag!r}",
            )
        return expected
    if namespace != document.namespace:
        raise ValidationError(
            document.path,
            f"top-level element must be in namespace {document.namespace}, not {namespace!r}",
        )
    if name not in document.roots:
        raise ValidationError(
            name, f"unknown top-level element; expected {' or '.join(document.roots)}"
        )
    return name


class _XmlReader:
    """Reads the elements of one parsed document against its schema."""

    def __init__(self, document: Document, scopes: Mapping[Element, Mapping[str, str]]) -> None:
        self._module = document.module
        self._modules = {namespace: module for module, namespace in document.namespaces.items()}
        self._scopes = scopes

    def members(self, element: Element, schema: Container, path: str) -> Tree:
        if not schema.anydata:
            strict_xml.refuse_attributes(element, path)
            strict_xml.refuse_text(element.text, path)
        parent_namespace, _ = strict_xml.split_tag(element.tag)
        tree: Tree = {}
        for child in element:
            if not schema.anydata:
                strict_xml.refuse_text(child.tail, path)
            namespace, local_name = strict_xml.split_tag(child.tag)
            # Children in the parent's namespace use the simple name, as in JSON (RFC 7951 §4).
            if namespace == parent_namespace:
                name = local_name
            elif namespace in self._modules:
                name = f"{self._modules[namespace]}:{local_name}"
            elif schema.anydata:
                continue
            else:
                raise ValidationError(
                    f"{path}/{local_name}", f"unknown member (namespace {namespace!r})"
                )
            kind = schema.members.get(name)
            child_path = f"{path}/{name}"
            if kind is None:
                if schema.anydata:
                    continue
                raise ValidationError(child_path, "unknown member")
            if isinstance(kind, List):
                entries = tree.setdefault(name, [])
                entry_path = _entry_path(kind, child_path, len(entries) + 1)
                entries.append(self.members(child, kind.entry, entry_path))
            elif isinstance(kind, LeafList):
                items = tree.setdefault(name, [])
                items.append(self.leaf(child, kind.leaf, f"{child_path}[{len(items) + 1}]"))
            elif name in tree:
                raise ValidationError(child_path, "appears more than once")
            elif isinstance(kind, Container):
                tree[name] = self.members(child, kind, child_path)
            else:
                tree[name] = self.leaf(child, kind, child_path)
        _check_mandatory(tree, schema, path)
        return tree

    def leaf(self, element: Element, leaf: Leaf, path: str) -> Any:
        if leaf is Leaf.OPAQUE:
            return True
        strict_xml.refuse_attributes(element, path)
        if len(element):
            raise ValidationError(path, "a leaf cannot contain elements")
        text = element.text or ""
        if leaf is Leaf.EMPTY:
            strict_xml.refuse_text(text, path)
            return True
        if leaf is Leaf.BINARY:
            return strict_json.decode_base64(text, path)
        if leaf is Leaf.UINT16:
            if not _XML_UNSIGNED.fullmatch(text):
                raise ValidationError(path, f"{text!r} is not an integer")
            return _uint16(int(text), path)
        if leaf is Leaf.IDENTITYREF:
            return self._identity(element, text, path)
        # The XML parser has already refused characters that XML cannot hold.
        return text

    def _identity(self, element: Element, text: str, path: str) -> str:
        # The prefix is resolved through the element's in-scope namespaces; without one, the
        # default namespace applies (RFC 7950 §9.10.3).
        prefix, separator, identity = text.rpartition(":")
        namespace = self._scopes.get(element, {}).get(prefix if separator else "")
        if namespace is None:
            raise ValidationError(path, f"namespace prefix {prefix!r} is not declared")
        if namespace not in self._modules:
            # No module to name it by, so no JSON form; it matches no identity the schema knows.
            return f"{{{namespace}}}{identity}"
        return f"{self._modules[namespace]}:{identity}"


def encode_xml(name: str, tree: Tree, document: Document) -> bytes:
    """The XML document whose top-level element `name` holds `tree`."""
    schema = document.roots[name]
    declarations = f' xmlns="{document.namespace}"'
    if document.prefix and _holds(schema, Leaf.IDENTITYREF):
        # Declared once, where identity values below can use it.
        declarations += f' xmlns:{document.prefix}="{document.namespace}"'
    content = _xml_content(tree, schema, document.root_path(name), document)
    return f"<{name}{declarations}>{content}</{name}>".encode()


def _holds(kind: Schema, leaf: Leaf) -> bool:
    if isinstance(kind, Container):
        return any(_holds(member, leaf) for member in kind.members.values())
    if isinstance(kind, List):
        return _holds(kind.entry, leaf)
    return (kind.leaf if isinstance(kind, LeafList) else kind) is leaf


def _xml_content(tree: Tree, schema: Container, path: str, document: Document) -> str:
    parts = []
    for name, kind in schema.members.items():
        if name not in tree:
            continue
        value = tree[name]
        # A list or leaf-list is one element per entry (RFC 7950 §7.8.5, §7.7.8).
        for item in value if isinstance(kind, List | LeafList) else [value]:
            parts.append(_xml_node(name, item, kind, f"{path}/{name}", document))
    return "".join(parts)


def _xml_node(name: str, value: Any, kind: Schema, path: str, document: Document) -> str:
    module, _, local_name = name.rpartition(":")
    declarations = f' xmlns="{document.namespaces[module]}"' if module else ""
    if isinstance(kind, List):
        content = _xml_content(value, kind.entry, path, document)
    elif isinstance(kind, Container):
        content = _xml_content(value, kind, path, document)
    else:
        leaf = kind.leaf if isinstance(kind, LeafList) else kind
        if leaf is Leaf.PATH:
            declarations += _xml_path_declarations(value, path, document)
        elif leaf is Leaf.IDENTITYREF:
            value, declaration = _xml_identity(value, path, document)
            declarations += declaration
        content = _xml_leaf_text(value, leaf, path)
    if not content and document.short_empty_elements:
        return f"<{local_name}{declarations}/>"
    return f"<{local_name}{declarations}>{content}</{local_name}>"


def _xml_path_declarations(value: str, path: str, document: Document) -> str:
    # An instance-identifier's prefixes are XML prefixes in XML (RFC 7950 §9.13.2): declare
    # each module name as the prefix for its own namespace, so the JSON form stays valid.
    declarations = []
    for module in dict.fromkeys(_PATH_MODULE.findall(value)):
        if module not in document.namespaces:
            raise ValidationError(path, f"unknown module {module!r} in {value!r}")
        declarations.append(f' xmlns:{module}="{document.namespaces[module]}"')
    return "".join(declarations)


def _xml_identity(value: str, path: str, document: Document) -> tuple[str, str]:
    """The XML form of identity `module:identity`, and the prefix declaration it needs on its
    leaf element ("" when the top-level element declares `document.prefix`)."""
    module, separator, identity = value.partition(":")
    if not separator or not identity:
        raise ValidationError(path, f"{value!r} is not an identity written module:identity")
    if module == document.module and document.prefix:
        return f"{document.prefix}:{identity}", ""
    namespace = document.namespaces.get(module)
    if namespace is None or module not in (document.module, *document.identity_modules):
        allowed = " or ".join((document.module, *document.identity_modules))
        raise ValidationError(path, f"identity {value!r} is not of module {allowed}")
    # The module name as the prefix keeps the value its JSON form, like instance-identifiers.
    return value, f' xmlns:{module}="{namespace}"'


def _xml_leaf_text(value: Any, leaf: Leaf, path: str) -> str:
    if leaf in (Leaf.EMPTY, Leaf.OPAQUE):
        return ""
    if leaf is Leaf.BINARY:
        return strict_json.encode_base64(value)
    if leaf is Leaf.UINT16:
        return str(value)
    check_text(value, path)
    return strict_xml.escape(value)
