"""The Package Availability List (RFC 8295 2.1): entries, XML and JSON.

Pure: entries in, bytes out, and back. The XML is built and read with lxml
and follows ``pal.xsd`` (the RFC's schema with its two typos fixed), which
``validate_xml`` checks. The readers are liberal (the RFC's own JSON example
has ``serial: 0``; clients may see either form) but refuse what cannot be an
entry: no type, no size, not exactly one kind of info.
"""
from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from lxml import etree

from .errors import PkiError

NAMESPACE = "urn:ietf:params:xml:ns:pal"
XML_MEDIA_TYPE = "application/xml"
JSON_MEDIA_TYPE = "application/json"
_NS = f"{{{NAMESPACE}}}"
_TYPE = re.compile(r"^\d{4}$")
_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
MAX_TEXT = 1024  # the schema's limit on dn, ski and uri


class BadPal(PkiError):
    """Not a PAL, or an entry that breaks RFC 8295 2.1."""


@dataclass(frozen=True)
class IssuerSerial:
    issuer: str  # RFC 4514 string
    serial: int


@dataclass(frozen=True)
class PalEntry:
    """One PAL message. Exactly one of ``uri``, ``dn``, ``ski``, ``iasn``."""

    type: str  # four digits
    size: int
    uri: str | None = None
    dn: str | None = None
    ski: bytes | None = None
    iasn: IssuerSerial | None = None
    date: datetime.datetime | None = None  # last successful download (UTC)

    def __post_init__(self) -> None:
        if not _TYPE.match(self.type or ""):
            raise BadPal(f"PAL type must be four digits, not {self.type!r}")
        if self.size < 0:
            raise BadPal("PAL size must not be negative")
        infos = [x for x in (self.uri, self.dn, self.ski, self.iasn) if x is not None]
        if len(infos) != 1:
            raise BadPal("a PAL entry needs exactly one of uri, dn, ski, iasn")
        for text in (self.uri, self.dn, self.iasn.issuer if self.iasn else None):
            if text is not None and len(text) > MAX_TEXT:
                raise BadPal("PAL info longer than 1024 characters")
        if self.date is not None and self.date.tzinfo is None:
            raise BadPal("PAL dates are UTC")

    @property
    def info_kind(self) -> str:
        return next(k for k in ("uri", "dn", "ski", "iasn") if getattr(self, k) is not None)


def format_date(when: datetime.datetime) -> str:
    """RFC 8295 2.1: exactly YYYY-MM-DDTHH:MM:SSZ (UTC, no fraction)."""
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_date(text: str) -> datetime.datetime:
    text = text.strip()
    if not _DATE.match(text):
        raise BadPal(f"PAL date must be YYYY-MM-DDTHH:MM:SSZ, not {text!r}")
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise BadPal(f"PAL date {text!r} is not a date") from None


# -- XML -------------------------------------------------------------------------------

def to_xml(entries: list[PalEntry]) -> bytes:
    root = etree.Element(_NS + "pal", nsmap={None: NAMESPACE})
    for e in entries:
        message = etree.SubElement(root, _NS + "message")
        etree.SubElement(message, _NS + "type").text = e.type
        if e.date is not None:
            etree.SubElement(message, _NS + "date").text = format_date(e.date)
        etree.SubElement(message, _NS + "size").text = str(e.size)
        info = etree.SubElement(message, _NS + "info")
        if e.uri is not None:
            etree.SubElement(info, _NS + "uri").text = e.uri
        elif e.dn is not None:
            etree.SubElement(info, _NS + "dn").text = e.dn
        elif e.ski is not None:
            etree.SubElement(info, _NS + "ski").text = e.ski.hex().upper()
        elif e.iasn is not None:  # __post_init__: exactly one of the four is set
            iasn = etree.SubElement(info, _NS + "iasn")
            etree.SubElement(iasn, _NS + "issuer").text = e.iasn.issuer
            etree.SubElement(iasn, _NS + "serial").text = str(e.iasn.serial)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname


def _children(element: etree._Element) -> list[etree._Element]:
    return [c for c in element if isinstance(c.tag, str)]


def _text(element: etree._Element) -> str:
    return (element.text or "").strip()


def parse_xml(data: bytes) -> list[PalEntry]:
    """Entries of an XML PAL (namespace-qualified as the schema says, or not)."""
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as e:
        raise BadPal(f"PAL is not XML: {e}") from None
    if _local(root) != "pal" or etree.QName(root).namespace not in (NAMESPACE, None):
        raise BadPal("the XML root is not a PAL (urn:ietf:params:xml:ns:pal)")
    entries = []
    for message in _children(root):
        if _local(message) != "message":
            raise BadPal(f"unexpected PAL element {_local(message)!r}")
        fields = {_local(c): c for c in _children(message)}
        if "type" not in fields or "size" not in fields or "info" not in fields:
            raise BadPal("a PAL message needs type, size and info")
        infos = _children(fields["info"])
        if len(infos) != 1:
            raise BadPal("PAL info must hold exactly one of uri, dn, ski, iasn")
        info = infos[0]
        kind, value = _local(info), _text(info)
        kwargs: dict[str, Any] = {}
        try:
            if kind == "uri" or kind == "dn":
                kwargs[kind] = value
            elif kind == "ski":
                kwargs["ski"] = bytes.fromhex(value)
            elif kind == "iasn":
                parts = {_local(c): _text(c) for c in _children(info)}
                kwargs["iasn"] = IssuerSerial(parts["issuer"], int(parts["serial"]))
            else:
                raise BadPal(f"unknown PAL info {kind!r}")
            size = int(_text(fields["size"]))
        except (KeyError, ValueError) as e:
            if isinstance(e, BadPal):
                raise
            raise BadPal(f"bad PAL {kind} or size: {e}") from None
        date = parse_date(_text(fields["date"])) if "date" in fields else None
        entries.append(PalEntry(type=_text(fields["type"]), size=size, date=date, **kwargs))
    return entries


def _schema() -> etree.XMLSchema:
    global _SCHEMA
    if _SCHEMA is None:
        with resources.files(__package__).joinpath("pal.xsd").open("rb") as f:
            _SCHEMA = etree.XMLSchema(etree.parse(f))
    return _SCHEMA


_SCHEMA: etree.XMLSchema | None = None


def validate_xml(data: bytes) -> None:
    """Raise BadPal unless ``data`` is valid against the (corrected) RFC 8295 schema."""
    try:
        doc = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as e:
        raise BadPal(f"PAL is not XML: {e}") from None
    schema = _schema()
    if not schema.validate(doc):
        raise BadPal("; ".join(f"line {err.line}: {err.message}" for err in schema.error_log))


# -- JSON (RFC 8295 2.1.3: an array of entry objects) ----------------------------------

def to_json(entries: list[PalEntry]) -> bytes:
    out = []
    for e in entries:
        item: dict[str, Any] = {"type": e.type}
        if e.date is not None:
            item["date"] = format_date(e.date)
        item["size"] = e.size
        if e.uri is not None:
            item["info"] = {"uri": e.uri}
        elif e.dn is not None:
            item["info"] = {"dn": e.dn}
        elif e.ski is not None:
            item["info"] = {"ski": e.ski.hex().upper()}
        elif e.iasn is not None:  # __post_init__: exactly one of the four is set
            item["info"] = {"iasn": {"issuer": e.iasn.issuer, "serial": e.iasn.serial}}
        out.append(item)
    return json.dumps(out, indent=1).encode()


def parse_json(data: bytes) -> list[PalEntry]:
    try:
        items = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadPal(f"PAL is not JSON: {e}") from None
    if isinstance(items, dict):  # liberal: a single entry, or {"pal": [...]}
        items = items.get("pal", [items]) if "type" not in items else [items]
    if not isinstance(items, list):
        raise BadPal("a JSON PAL is an array of entries")
    entries = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("info"), dict) or len(item["info"]) != 1:
            raise BadPal("a JSON PAL entry needs type, size and exactly one info member")
        (kind, value), = item["info"].items()
        kwargs: dict[str, Any] = {}
        try:
            if kind in ("uri", "dn"):
                kwargs[kind] = str(value)
            elif kind == "ski":
                kwargs["ski"] = bytes.fromhex(str(value))
            elif kind == "iasn":
                kwargs["iasn"] = IssuerSerial(str(value["issuer"]), int(value["serial"]))
            else:
                raise BadPal(f"unknown PAL info {kind!r}")
            size = int(item["size"])
            pal_type = str(item["type"])
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, BadPal):
                raise
            raise BadPal(f"bad JSON PAL entry: {e}") from None
        date = parse_date(str(item["date"])) if item.get("date") is not None else None
        entries.append(PalEntry(type=pal_type, size=size, date=date, **kwargs))
    return entries


def parse(body: bytes, content_type: str | None) -> list[PalEntry]:
    """Entries of a PAL response, XML or JSON by Content-Type (or by its first byte)."""
    essence = (content_type or "").split(";", 1)[0].strip().lower()
    if essence.endswith("json") or (not essence.endswith("xml") and body.lstrip()[:1] in (b"[", b"{")):
        return parse_json(body)
    return parse_xml(body)
