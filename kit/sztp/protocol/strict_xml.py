"""Strict XML reading and writing shared by the RFC 7950 codecs (RESTCONF bodies, conveyed
information): no DTD and so no entities, UTF-8 only, no attributes or stray text where YANG
has none, every defect a ValidationError naming the path."""

from __future__ import annotations

from xml.etree.ElementTree import Element, ParseError, TreeBuilder

from defusedxml.ElementTree import DefusedXMLParser

from ..errors import ValidationError
from . import strict_json


def parse(body: bytes, path: str, max_size: int, target: object | None = None) -> Element:
    """The root element of `body`, built by `target` if given."""
    strict_json.document_text(
        body, path, max_size
    )  # size and UTF-8 checks; the parser reads the bytes
    # UTF-8 whatever an XML declaration claims (checked just above); no DTD, so no entities.
    parser = DefusedXMLParser(target=target, encoding="utf-8", forbid_dtd=True)
    try:
        parser.feed(body)
        return parser.close()
    except (ParseError, ValueError) as error:
        # defusedxml's DTDForbidden and EntitiesForbidden are ValueErrors.
        raise ValidationError(path, f"not well-formed or unsafe XML: {error}") from None


def split_tag(tag: str) -> tuple[str, str]:
    """`{namespace}name` (ElementTree's form) as (namespace, name); no namespace gives ""."""
    if tag.startswith("{"):
        namespace, _, name = tag[1:].partition("}")
        return namespace, name
    return "", tag


def refuse_attributes(element: Element, path: str) -> None:
    if element.attrib:
        raise ValidationError(path, f"unexpected attribute {next(iter(element.attrib))!r}")


def refuse_text(text: str | None, path: str) -> None:
    if (text or "").strip():
        raise ValidationError(path, "unexpected text content")


def escape(text: str) -> str:
    # "\r" is escaped too: a parser would otherwise normalise it to "\n".
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


class ScopedTreeBuilder:
    """A tree builder (an XML parser's target) that also records each element's in-scope
    namespaces, and refuses more than `max_elements` elements.

    ElementTree resolves element names but forgets prefixes, and an identityref value such as
    `sztp-info:sha-256` must be resolved through them (RFC 7950 §9.10.3).
    """

    def __init__(self, path: str, max_elements: int) -> None:
        self._builder = TreeBuilder()
        self._path = path
        self._max_elements = max_elements
        self._pending: dict[str, str] = {}
        self._open_scopes: list[dict[str, str]] = [{}]
        self.scopes: dict[Element, dict[str, str]] = {}

    def start_ns(self, prefix: str, uri: str) -> None:
        self._pending[prefix] = uri

    def start(self, tag: str, attributes: dict[str, str]) -> Element:
        if len(self.scopes) >= self._max_elements:
            raise ValidationError(self._path, f"more than {self._max_elements} XML elements")
        scope = self._open_scopes[-1]
        if self._pending:
            # Share the parent's mapping unless this element declares namespaces itself.
            scope = {**scope, **self._pending}
            self._pending = {}
        self._open_scopes.append(scope)
        element = self._builder.start(tag, attributes)
        self.scopes[element] = scope
        return element

    def end(self, tag: str) -> Element:
        self._open_scopes.pop()
        return self._builder.end(tag)

    def data(self, text: str) -> None:
        self._builder.data(text)

    def close(self) -> Element:
        return self._builder.close()
