"""S3's REST-XML: response documents, error documents, and the few request bodies S3 takes."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

from ..server.errors import AWSError
from ..server.http import Response

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
XML_TYPE = [("Content-Type", "application/xml")]
MAX_XML_BODY = 2 << 20  # DeleteObjects with 1000 long keys fits comfortably


def iso8601(epoch: float) -> str:
    """S3's timestamp format in XML bodies: 2009-10-12T17:50:30.000Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}Z"


def http_date(epoch: float) -> str:
    """RFC 7231 dates, for Last-Modified."""
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(epoch))


def document(root: str) -> ET.Element:
    return ET.Element(root, xmlns=NAMESPACE)


def add(parent: ET.Element, tag: str, text=None) -> ET.Element:
    """Append ``<tag>text</tag>`` (booleans as true/false; None leaves the element empty)."""
    child = ET.SubElement(parent, tag)
    if isinstance(text, bool):
        child.text = "true" if text else "false"
    elif text is not None:
        child.text = str(text)
    return child


def add_raw(parent: ET.Element, fragment: str) -> None:
    """Append already-serialized XML (for long listings, where building elements one by one costs most)."""
    ET.SubElement(parent, _RAW).text = fragment


_RAW = "\0raw"


def add_all(parent: ET.Element, values: dict) -> None:
    """Append one element per populated entry of ``values``, in order."""
    for tag, value in values.items():
        if value is not None:
            add(parent, tag, value)


def xml_response(root: ET.Element, status: int = 200, headers: list | None = None) -> Response:
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n']
    _serialize(root, out)
    return Response(status, "".join(out).encode("utf-8"), XML_TYPE + (headers or []))


def _serialize(element: ET.Element, out: list[str]) -> None:
    """ElementTree's own serializer is general and slow (most of a 1000-key listing's time); S3's documents
    need no namespaces beyond the root's xmlns and no other attributes."""
    tag = element.tag
    if tag == _RAW:
        out.append(element.text or "")  # add_raw always sets it
        return
    opening = f'<{tag} xmlns="{element.get("xmlns")}">' if element.get("xmlns") else f"<{tag}>"
    text = escape(element.text) if element.text else ""
    if len(element):
        out.append(opening + text)
        for child in element:
            _serialize(child, out)
        out.append(f"</{tag}>")
    else:
        out.append(f"{opening}{text}</{tag}>")


def error_response(error: AWSError, request_id: str, resource: str | None = None, head: bool = False) -> Response:
    if head:  # HEAD answers carry no body; botocore reads the status alone
        return Response(error.status, b"", [("Content-Length", "0")])
    root = ET.Element("Error")
    add(root, "Code", error.code)
    add(root, "Message", error.message)
    for name, value in error.fields.items():
        add(root, name, value)
    if resource and "Resource" not in error.fields:
        add(root, "Resource", resource)
    add(root, "RequestId", request_id)
    return xml_response(root, error.status)


def parse(body: bytes) -> ET.Element:
    """A request document with namespaces stripped; MalformedXML when it is not one."""
    if len(body) > MAX_XML_BODY:
        raise AWSError("MalformedXML", "The XML you provided was too large.")
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise malformed() from None
    for element in root.iter():
        if isinstance(element.tag, str) and "}" in element.tag:
            element.tag = element.tag.split("}", 1)[1]
    return root


def text(element: ET.Element, tag: str, default: str | None = None) -> str | None:
    child = element.find(tag)
    return default if child is None or child.text is None else child.text


def malformed() -> AWSError:
    return AWSError(
        "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema."
    )
