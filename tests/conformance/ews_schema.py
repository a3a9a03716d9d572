"""Check EWS SOAP messages against Microsoft's EWS schema set (``tests/conformance/ews``).

The SOAP envelope itself is not part of the EWS schemas (see ``ews/README.md``), so a message is
checked in two steps:

* the envelope: a SOAP 1.1 ``Envelope`` with an optional ``Header`` and one ``Body``; a response
  carries ``t:ServerVersionInfo`` in its header (exchangelib learns the server version from it);
* every child element of ``Header`` and of ``Body`` is validated on its own, as a global element of
  the schema set, with lxml. A ``soap:Fault`` is SOAP, not EWS: its layout is checked by hand
  (``faultcode``, ``faultstring``, an optional ``detail`` whose ``e:ResponseCode`` must be one of
  the schema's ``m:ResponseCodeType`` values and whose ``t:MessageXml``, when present, is
  well-formed).

The set is loaded through a small driver schema that imports ``xml.xsd``, ``types.xsd`` and
``messages.xsd`` in that order, with the folder as base URL, so ``types.xsd``'s location-less import
of the XML namespace is satisfied and nothing is fetched from the network.
"""

# No "from __future__ import annotations": see graph_openapi.py (dataclasses loaded by path).
import functools
import pathlib
import re
import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from lxml import etree  # type: ignore[import-untyped]

EWS_DIR: Final = pathlib.Path(__file__).with_name("ews")

SOAP_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
TYPES_NS: Final = "http://schemas.microsoft.com/exchange/services/2006/types"
MESSAGES_NS: Final = "http://schemas.microsoft.com/exchange/services/2006/messages"
ERRORS_NS: Final = "http://schemas.microsoft.com/exchange/services/2006/errors"
XSD_NS: Final = "http://www.w3.org/2001/XMLSchema"

_DRIVER: Final = b"""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:import namespace="http://www.w3.org/XML/1998/namespace" schemaLocation="xml.xsd"/>
  <xs:import namespace="http://schemas.microsoft.com/exchange/services/2006/types" schemaLocation="types.xsd"/>
  <xs:import namespace="http://schemas.microsoft.com/exchange/services/2006/messages" schemaLocation="messages.xsd"/>
</xs:schema>"""

Direction = Literal["request", "response"]

# Distinguished folder ids that exchangelib 5.6 sends (``Root.WELLKNOWN_FOLDERS``, when it maps a
# mailbox for ``children``/``walk``) and Exchange Online accepts, but that this schema snapshot
# (V2018_01_08) predates. In a request, a DistinguishedFolderId/@Id enumeration error for one of
# these values is tolerated; nothing else is.
NEWER_DISTINGUISHED_FOLDER_IDS: Final = frozenset(
    {
        "allcontacts",
        "allitems",
        "allpersonmetadata",
        "companycontacts",
        "dlppolicyevaluation",
        "fromfavoritesenders",
        "inference",
        "onenotepagepreviews",
        "peoplecentricconversationbuddies",
        "qedcdefaultretention",
        "qedclongretention",
        "qedcmediumretention",
        "qedcshortretention",
        "quarantinedemail",
        "quarantinedemaildefaultcategory",
        "recoverableitemssubstrateholds",
        "relevantcontacts",
        "sharepointnotifications",
        "shortnotes",
        "temporarysaves",
        "usercuratedcontacts",
    }
)
_FOLDER_ID_ENUM_ERROR: Final = re.compile(
    r"^Element '\{http://schemas\.microsoft\.com/exchange/services/2006/types\}DistinguishedFolderId', "
    r"attribute 'Id': \[facet 'enumeration'\] The value '(?P<value>[^']*)' is not an element of the set"
)


class EwsConformanceError(AssertionError):
    """A SOAP message that Microsoft's EWS schema set rejects; the text names the element."""


def _safe_parser() -> Any:
    """No network, no DTD, no entity expansion: the parser for untrusted SOAP text."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=False,
    )


def _qname(element: Any) -> str:
    q = etree.QName(element)
    prefix = {SOAP_NS: "soap", TYPES_NS: "t", MESSAGES_NS: "m", ERRORS_NS: "e"}.get(
        q.namespace or "", q.namespace or ""
    )
    return f"{prefix}:{q.localname}" if prefix else q.localname


@dataclass
class EwsSchema:
    """Microsoft's EWS schema set, loaded once (use :meth:`load`)."""

    schema: Any
    response_codes: frozenset[str]
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, directory: pathlib.Path | None = None) -> "EwsSchema":
        """The schema set in ``directory`` (default: ``tests/conformance/ews``), cached per folder."""
        return _load(str((directory or EWS_DIR).resolve()))

    # --- single elements --------------------------------------------------------------------

    def validate_element(
        self, element: Any, *, where: str = "", tolerate_folder_ids: Collection[str] = ()
    ) -> None:
        """Validate one global EWS element (a header or an operation message) in place.

        Args:
            element: the lxml element; its ancestors' namespace declarations stay in scope.
            where: text put in front of the element's name in an error.
            tolerate_folder_ids: DistinguishedFolderId values to accept although the schema's
                enumeration lacks them (see ``NEWER_DISTINGUISHED_FOLDER_IDS``).

        Raises:
            EwsConformanceError: naming the element and lxml's first errors.
        """
        # lxml validates an element subtree as the validation root; one validation at a time, the
        # schema's validation context is not meant to be shared between threads.
        with self._lock:
            valid = self.schema.validate(element)
            errors = list(self.schema.error_log) if not valid else []
        if not valid and tolerate_folder_ids:
            errors = [e for e in errors if not _tolerated(e.message, tolerate_folder_ids)]
            valid = not errors
        if not valid:
            detail = (
                "; ".join(f"line {e.line}: {e.message}" for e in errors[:5])
                or "(no message from lxml)"
            )
            raise EwsConformanceError(f"{where}{_qname(element)}: {detail}")

    # --- whole envelopes ----------------------------------------------------------------------

    def validate_envelope(
        self,
        xml_bytes: bytes,
        *,
        direction: Direction,
        require_server_version: bool = True,
        tolerate_folder_ids: Collection[str] = (),
    ) -> int:
        """Check a SOAP envelope; returns how many EWS elements were validated.

        Args:
            xml_bytes: the HTTP body.
            direction: ``"request"`` (what a client sent) or ``"response"`` (what the server sent).
            require_server_version: for a response, demand ``t:ServerVersionInfo`` in the header.
            tolerate_folder_ids: see :meth:`validate_element`.

        Raises:
            EwsConformanceError: the message is not well-formed, not a SOAP 1.1 envelope, or an
                element does not conform.
        """
        if direction not in ("request", "response"):
            raise ValueError(f"direction must be 'request' or 'response', got {direction!r}")
        where = f"EWS {direction}: "
        try:
            root = etree.fromstring(xml_bytes, _safe_parser())
        except etree.XMLSyntaxError as exc:
            raise EwsConformanceError(f"{where}not well-formed XML: {exc}") from None
        if root.tag != f"{{{SOAP_NS}}}Envelope":
            raise EwsConformanceError(f"{where}root element is {root.tag}, not a SOAP 1.1 Envelope")
        children = [c for c in root if isinstance(c.tag, str)]
        names = [etree.QName(c).localname for c in children if etree.QName(c).namespace == SOAP_NS]
        if len(names) != len(children) or names not in (["Body"], ["Header", "Body"]):
            raise EwsConformanceError(
                f"{where}Envelope must hold an optional soap:Header and one soap:Body, "
                f"found {[_qname(c) for c in children]}"
            )
        header = children[0] if names[0] == "Header" else None
        body = children[-1]
        checked = 0
        header_elements = (
            [c for c in header if isinstance(c.tag, str)] if header is not None else []
        )
        for element in header_elements:
            self.validate_element(element, where=f"{where}soap:Header/")
            checked += 1
        has_version = any(e.tag == f"{{{TYPES_NS}}}ServerVersionInfo" for e in header_elements)
        if direction == "response" and require_server_version and not has_version:
            raise EwsConformanceError(f"{where}soap:Header has no t:ServerVersionInfo")
        body_elements = [c for c in body if isinstance(c.tag, str)]
        if len(body_elements) != 1:
            raise EwsConformanceError(
                f"{where}soap:Body must hold exactly one element, found {len(body_elements)}"
            )
        for element in body_elements:
            if element.tag == f"{{{SOAP_NS}}}Fault":
                if direction == "request":
                    raise EwsConformanceError(f"{where}a request cannot carry a soap:Fault")
                self._check_fault(element, where=f"{where}soap:Body/soap:Fault")
            else:
                self.validate_element(
                    element, where=f"{where}soap:Body/", tolerate_folder_ids=tolerate_folder_ids
                )
            checked += 1
        return checked

    def _check_fault(self, fault: Any, *, where: str) -> None:
        """SOAP 1.1 fault: unqualified faultcode, faultstring, optional faultactor and detail."""
        parts = [c for c in fault if isinstance(c.tag, str)]
        tags = [c.tag for c in parts]
        allowed = ["faultcode", "faultstring", "faultactor", "detail"]
        if (
            tags[:2] != ["faultcode", "faultstring"]
            or any(t not in allowed for t in tags)
            or len(set(tags)) != len(tags)
        ):
            raise EwsConformanceError(
                f"{where}: children must be faultcode, faultstring[, faultactor][, detail]; found {tags}"
            )
        code = (parts[0].text or "").strip()
        if not code:
            raise EwsConformanceError(f"{where}/faultcode is empty")
        prefix, _, local = code.rpartition(":")
        if prefix and parts[0].nsmap.get(prefix) is None:
            raise EwsConformanceError(f"{where}/faultcode {code!r} uses an undeclared prefix")
        detail = next((p for p in parts if p.tag == "detail"), None)
        if detail is None:
            return
        response_code = detail.find(f"{{{ERRORS_NS}}}ResponseCode")
        if response_code is None or detail.find(f"{{{ERRORS_NS}}}Message") is None:
            raise EwsConformanceError(f"{where}/detail needs e:ResponseCode and e:Message")
        value = (response_code.text or "").strip()
        if value not in self.response_codes:
            raise EwsConformanceError(
                f"{where}/detail/e:ResponseCode {value!r} is not a value of m:ResponseCodeType"
            )
        if prefix and parts[0].nsmap.get(prefix) == TYPES_NS and local != value:
            raise EwsConformanceError(
                f"{where}: faultcode {code!r} and e:ResponseCode {value!r} disagree"
            )
        for child in detail:
            if not isinstance(child.tag, str):
                continue
            if etree.QName(child).namespace not in (ERRORS_NS, TYPES_NS):
                raise EwsConformanceError(f"{where}/detail holds a foreign element {child.tag}")


def _tolerated(message: str, folder_ids: Collection[str]) -> bool:
    m = _FOLDER_ID_ENUM_ERROR.match(message)
    return m is not None and m.group("value") in folder_ids


@functools.cache
def _load(directory: str) -> EwsSchema:
    base = pathlib.Path(directory)
    driver = etree.fromstring(_DRIVER, _safe_parser(), base_url=(base / "driver.xsd").as_uri())
    schema = etree.XMLSchema(driver)
    messages = etree.parse(str(base / "messages.xsd"), _safe_parser())
    values = messages.xpath(
        "//xs:simpleType[@name='ResponseCodeType']/xs:restriction/xs:enumeration/@value",
        namespaces={"xs": XSD_NS},
    )
    if not values:
        raise RuntimeError("messages.xsd has no m:ResponseCodeType enumeration")
    return EwsSchema(schema=schema, response_codes=frozenset(str(v) for v in values))


@dataclass
class EwsConformanceLog:
    """What the EWS conformance check saw in one test (see the ``ews_conformance`` fixture).

    A test that sends deliberately broken requests sets ``check_requests = False``; responses are
    always checked.
    """

    checked: int = 0
    check_requests: bool = True
    violations: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, schema: EwsSchema, content: bytes, direction: Direction) -> None:
        """Validate one message body and record the verdict."""
        tolerated = NEWER_DISTINGUISHED_FOLDER_IDS if direction == "request" else frozenset()
        try:
            schema.validate_envelope(content, direction=direction, tolerate_folder_ids=tolerated)
        except EwsConformanceError as exc:
            with self.lock:
                self.violations.append(str(exc))
            return
        with self.lock:
            self.checked += 1
