"""Exchange Web Services (SOAP 1.1) at ``/EWS/Exchange.asmx``.

What a client sees, in the order Exchange Online decides it (shared/reference/protocol.md §4):

1. ``POST`` only (405 otherwise).
2. The bearer token: 401 with an empty body, ``WWW-Authenticate`` and ``x-ms-diagnostics``
   (2000001 invalid or expired, 2000003 wrong audience, 2000004 foreign tenant, 2000008 no
   permissions).
3. The SOAP envelope: not well-formed or not a SOAP 1.1 envelope -> 500 fault
   ``ErrorSchemaValidation``.
4. The access decision of :meth:`Exchange.ews_decision` for the impersonated mailbox
   (``soap:Header/t:ExchangeImpersonation``): 401 2000008, a policy block (empty 403, or with the
   ``soap`` knob a per-item ``ErrorAccessDenied``), 500 faults ``ErrorNonExistentMailbox`` and
   ``ErrorInvalidExchangeImpersonationHeaderData``.
5. The operation named by the body's element (SOAPAction is ignored): GetFolder, FindFolder,
   ResolveNames, ConvertId; anything else -> 500 fault ``ErrorInvalidRequest``.

``X-AnchorMailbox`` is accepted present or absent: Exchange Online routes on it (and answers
without it, if more slowly); one emulated server needs no routing.

Every SOAP answer, faults included, carries ``s:Header/h:ServerVersionInfo`` (15.20,
``V2018_01_08``): exchangelib learns the server version from it. A denial also names its layer
in ``X-Emulator-Denial`` (emulator only; Exchange Online sends nothing comparable), so that
tests and diagnostics can tell the layers apart even where Exchange's wire form is the same.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import httpx
from lxml import etree  # type: ignore[import-untyped]

from mim_o365._wellknown import EXCHANGE_APP_ID
from mim_o365.emulator._exchange import EwsDecision, Recipient
from mim_o365.emulator._tokens import InvalidToken

if TYPE_CHECKING:
    from mim_o365.emulator._emulator import Emulator
    from mim_o365.emulator._models import User

SOAP_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
TYPES_NS: Final = "http://schemas.microsoft.com/exchange/services/2006/types"
MESSAGES_NS: Final = "http://schemas.microsoft.com/exchange/services/2006/messages"
ERRORS_NS: Final = "http://schemas.microsoft.com/exchange/services/2006/errors"
XML_NS: Final = "http://www.w3.org/XML/1998/namespace"

ENDPOINT: Final = "/ews/exchange.asmx"
CONTENT_TYPE: Final = "text/xml; charset=utf-8"
DENIAL_HEADER: Final = "X-Emulator-Denial"

# Exchange Online as exchangelib knows it (EXCHANGE_O365 = 15.20); the build is illustrative.
SERVER_VERSION: Final = {
    "MajorVersion": "15",
    "MinorVersion": "20",
    "MajorBuildNumber": "8944",
    "MinorBuildNumber": "21",
    "Version": "V2018_01_08",
}

WWW_AUTHENTICATE: Final = (
    f'Bearer client_id="{EXCHANGE_APP_ID}", '
    'trusted_issuers="00000001-0000-0000-c000-000000000000@*", '
    'token_types="app_asserted_user_v1 service_asserted_app_v1", '
    'authorization_uri="https://login.windows.net/common/oauth2/authorize", '
    'error="invalid_token"'
)

NO_PERMISSION: Final = "The token contains no permissions, or permissions can not be understood."
NO_MAILBOX: Final = "The SMTP address has no mailbox associated with it."
NO_IMPERSONATION: Final = (
    "ExchangeImpersonation SOAP header must be present for this type of OAuth token."
)
BAD_IMPERSONATION: Final = "The ExchangeImpersonation SOAP header is malformed."
INVALID_REQUEST: Final = "The request is invalid."
FOLDER_NOT_FOUND: Final = "The specified folder could not be found in the store."
ID_MALFORMED: Final = "Id is malformed."

# Layers of EwsDecision that block the app by configuration (EwsEnabled, allow list, policies).
POLICY_LAYERS: Final = frozenset(
    {"ews_disabled", "not_allow_listed", "access_policy", "rbac_scope"}
)


@dataclass(frozen=True)
class _Folder:
    """A folder every emulated mailbox holds."""

    key: str  # the distinguished folder id
    name: str
    parent: str | None
    folder_class: str | None = None
    element: str = "Folder"  # Folder | CalendarFolder | ContactsFolder | TasksFolder


# A new Exchange Online mailbox, trimmed: the roots, the IPM subtree and the recoverable items.
FOLDERS: Final = (
    _Folder("root", "Root", None),
    _Folder("msgfolderroot", "Top of Information Store", "root", "IPF.Note"),
    _Folder("inbox", "Inbox", "msgfolderroot", "IPF.Note"),
    _Folder("drafts", "Drafts", "msgfolderroot", "IPF.Note"),
    _Folder("sentitems", "Sent Items", "msgfolderroot", "IPF.Note"),
    _Folder("deleteditems", "Deleted Items", "msgfolderroot", "IPF.Note"),
    _Folder("outbox", "Outbox", "msgfolderroot", "IPF.Note"),
    _Folder("junkemail", "Junk Email", "msgfolderroot", "IPF.Note"),
    _Folder("archive", "Archive", "msgfolderroot", "IPF.Note"),
    _Folder("conversationhistory", "Conversation History", "msgfolderroot", "IPF.Note"),
    _Folder("calendar", "Calendar", "msgfolderroot", "IPF.Appointment", "CalendarFolder"),
    _Folder("contacts", "Contacts", "msgfolderroot", "IPF.Contact", "ContactsFolder"),
    _Folder("tasks", "Tasks", "msgfolderroot", "IPF.Task", "TasksFolder"),
    _Folder("notes", "Notes", "msgfolderroot", "IPF.StickyNote"),
    _Folder("journal", "Journal", "msgfolderroot", "IPF.Journal"),
    _Folder("recoverableitemsroot", "Recoverable Items", "root"),
    _Folder("recoverableitemsdeletions", "Deletions", "recoverableitemsroot"),
    _Folder("recoverableitemsversions", "Versions", "recoverableitemsroot"),
    _Folder("recoverableitemspurges", "Purges", "recoverableitemsroot"),
)
_BY_KEY: Final = {f.key: f for f in FOLDERS}
_ID_PREFIX: Final = b"\x00\x03EMU"

# Folder properties we serve, by FieldURI, in the schema's order (t:BaseFolderType, then t:FolderType).
_PROPERTY_ORDER: Final = (
    "FolderId",
    "ParentFolderId",
    "FolderClass",
    "DisplayName",
    "TotalCount",
    "ChildFolderCount",
    "EffectiveRights",
    "DistinguishedFolderId",
    "UnreadCount",
)
_SHAPES: Final = {
    "IdOnly": frozenset({"FolderId"}),
    "Default": frozenset(
        {"FolderId", "DisplayName", "TotalCount", "ChildFolderCount", "UnreadCount"}
    ),
    "AllProperties": frozenset(_PROPERTY_ORDER),
}
# Only t:FolderType (Folder, TasksFolder, SearchFolder) has UnreadCount.
_HAS_UNREAD: Final = frozenset({"Folder", "TasksFolder"})


class _BadRequest(Exception):  # noqa: N818 - control flow, answered as a SOAP fault
    def __init__(self, code: str, message: str, message_xml: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.message_xml = message_xml or {}


class _ItemError(NamedTuple):
    """A per-item error: the response message's ResponseCode and MessageText."""

    code: str
    text: str


@dataclass(frozen=True)
class _Soap:
    """The parts of a request envelope the emulator looks at."""

    operation: Any  # the soap:Body child (lxml element)
    name: str  # its local name, e.g. "GetFolder"
    impersonation: str  # "absent" | "ok" | "malformed"
    mailbox: str | None


def _t(name: str) -> str:
    return f"{{{TYPES_NS}}}{name}"


def _m(name: str) -> str:
    return f"{{{MESSAGES_NS}}}{name}"


def _sub(parent: Any, tag: str, text: str | None = None, **attrs: str) -> Any:
    element = etree.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def _safe_parser() -> Any:
    """A parser for untrusted text: no network, no DTD, no entity expansion."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
    )


class Ews:
    """The EWS surface of an :class:`Emulator`."""

    def __init__(self, emulator: Emulator) -> None:
        self.em = emulator

    # --- entry point ----------------------------------------------------------------------------

    def handle(self, request: httpx.Request, path: str) -> httpx.Response:
        """Serve ``path`` (``/EWS/Exchange.asmx``)."""
        if path.lower() != ENDPOINT:
            return httpx.Response(404)
        if request.method != "POST":
            return httpx.Response(405, headers={"Allow": "POST"})
        claims = self._authenticate(request)
        if isinstance(claims, httpx.Response):
            return claims
        try:
            soap = self._parse(request.content)
        except _BadRequest as bad:
            return self._fault(bad.code, bad.message, bad.message_xml)
        roles = claims.get("roles")
        decision = self.em.exchange.ews_decision(
            str(claims.get("appid", "")),
            str(claims.get("oid", "")),
            [str(r) for r in roles] if isinstance(roles, list) else [],
            soap.mailbox if soap.impersonation == "ok" else None,
        )
        if not decision.allowed:
            return self._deny(decision, soap)
        assert soap.mailbox is not None  # noqa: S101 - an allowed decision had a mailbox
        user = self.em.exchange.has_mailbox(soap.mailbox)
        assert user is not None  # noqa: S101 - and the mailbox exists
        operation = getattr(self, f"_op_{soap.name}", None)
        if operation is None:
            return self._fault("ErrorInvalidRequest", INVALID_REQUEST)
        try:
            body: Any = operation(soap.operation, user, claims)
        except _BadRequest as bad:
            return self._fault(bad.code, bad.message, bad.message_xml)
        return self._soap(200, body)

    # --- authentication -------------------------------------------------------------------------

    def _authenticate(self, request: httpx.Request) -> dict[str, Any] | httpx.Response:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return self._unauthorized(
                2000001, "The bearer token is missing from the request.", "invalid_token"
            )
        exo = self.em.directory.sp_by_app_id(EXCHANGE_APP_ID)
        audiences = tuple(exo.service_principal_names) if exo else (EXCHANGE_APP_ID,)
        try:
            claims = self.em.tokens.validate(token, audiences=audiences, now=self.em.clock.now())
        except InvalidToken as exc:
            if exc.kind == "invalid_resource":
                return self._unauthorized(2000003, exc.reason, "invalid_resource")
            if exc.kind == "expired":
                return self._unauthorized(2000001, "The token has expired.", "invalid_token")
            return self._unauthorized(2000001, exc.reason, "invalid_token")
        tid = str(claims.get("tid", ""))
        if tid.lower() != self.em.directory.state.tenant.id.lower():
            return self._unauthorized(
                2000004, f"The tenant for tenant guid '{tid}' does not exist.", "invalid_tenant"
            )
        if claims.get("idtyp") != "app":
            # Delegated (user) tokens are not emulated for EWS: answered like a token without
            # the permissions EWS understands.
            return self._unauthorized(
                2000008, NO_PERMISSION, "invalid_grant", layer="no_permission"
            )
        return claims

    @staticmethod
    def _unauthorized(
        number: int, reason: str, category: str, *, layer: str | None = None
    ) -> httpx.Response:
        headers = {
            "WWW-Authenticate": WWW_AUTHENTICATE,
            "x-ms-diagnostics": f'{number};reason="{reason}";error_category="{category}"',
        }
        if layer:
            headers[DENIAL_HEADER] = layer
        return httpx.Response(401, headers=headers)

    # --- request parsing ------------------------------------------------------------------------

    def _parse(self, content: bytes) -> _Soap:
        try:
            root = etree.fromstring(content, _safe_parser())
        except etree.XMLSyntaxError as exc:
            line, column = exc.position if exc.position else (0, 0)
            raise _BadRequest(
                "ErrorSchemaValidation",
                f"The request failed schema validation: {exc.msg}",
                {"LineNumber": str(line), "LinePosition": str(column), "Violation": str(exc.msg)},
            ) from None
        if root.getroottree().docinfo.doctype:
            raise self._schema_error(root, "DTD is prohibited in this XML document.")
        if root.tag != f"{{{SOAP_NS}}}Envelope":
            raise self._schema_error(
                root,
                "The root element must be the SOAP 1.1 Envelope ('http://schemas.xmlsoap.org/soap/envelope/').",
            )
        parts = [c for c in root if isinstance(c.tag, str)]
        header = next((c for c in parts if c.tag == f"{{{SOAP_NS}}}Header"), None)
        body = next((c for c in parts if c.tag == f"{{{SOAP_NS}}}Body"), None)
        if body is None:
            raise self._schema_error(root, "The SOAP envelope has no Body element.")
        operations = [c for c in body if isinstance(c.tag, str)]
        if len(operations) != 1:
            raise self._schema_error(
                body, "The SOAP Body must contain exactly one request element."
            )
        operation = operations[0]
        name = (
            etree.QName(operation).localname
            if operation.tag.startswith(f"{{{MESSAGES_NS}}}")
            else ""
        )
        impersonation, mailbox = "absent", None
        found = header.find(_t("ExchangeImpersonation")) if header is not None else None
        if found is not None:
            impersonation = "malformed"
            sid = found.find(_t("ConnectingSID"))
            ids = [c for c in sid if isinstance(c.tag, str)] if sid is not None else []
            if len(ids) == 1 and etree.QName(ids[0]).localname in (
                "PrimarySmtpAddress",
                "SmtpAddress",
                "PrincipalName",
                "SID",
            ):
                text = (ids[0].text or "").strip()
                if text:
                    impersonation, mailbox = "ok", text
        return _Soap(operation, name, impersonation, mailbox)

    @staticmethod
    def _schema_error(element: Any, violation: str) -> _BadRequest:
        line = getattr(element, "sourceline", None) or 1
        return _BadRequest(
            "ErrorSchemaValidation",
            f"The request failed schema validation: {violation}",
            {"LineNumber": str(line), "LinePosition": "1", "Violation": violation},
        )

    # --- denials --------------------------------------------------------------------------------

    def _deny(self, decision: EwsDecision, soap: _Soap) -> httpx.Response:
        layer = decision.layer
        if layer == "no_permission":
            return self._unauthorized(2000008, NO_PERMISSION, "invalid_grant", layer=layer)
        if layer in POLICY_LAYERS:
            if self.em.knobs.ews_denial == "soap" and hasattr(self, f"_op_{soap.name}"):
                body = self._response(
                    soap.name,
                    (
                        self._error_message(soap.name, "ErrorAccessDenied", decision.detail)
                        for _ in range(self._item_count(soap))
                    ),
                )
                return self._soap(200, body, layer=layer)
            return httpx.Response(403, headers={DENIAL_HEADER: layer})
        if layer == "mailbox_missing":
            return self._fault("ErrorNonExistentMailbox", NO_MAILBOX, layer=layer)
        if layer == "no_impersonation":
            text = BAD_IMPERSONATION if soap.impersonation == "malformed" else NO_IMPERSONATION
            return self._fault("ErrorInvalidExchangeImpersonationHeaderData", text, layer=layer)
        return self._fault("ErrorAccessDenied", decision.detail or "Access is denied.", layer=layer)

    @staticmethod
    def _item_count(soap: _Soap) -> int:
        container = {
            "GetFolder": "FolderIds",
            "FindFolder": "ParentFolderIds",
            "ConvertId": "SourceIds",
        }.get(soap.name)
        if container is None:
            return 1
        found = soap.operation.find(_m(container))
        count = len([c for c in found if isinstance(c.tag, str)]) if found is not None else 0
        return max(count, 1)

    # --- envelopes ------------------------------------------------------------------------------

    def _soap(self, status: int, body_child: Any, *, layer: str | None = None) -> httpx.Response:
        envelope = etree.Element(f"{{{SOAP_NS}}}Envelope", nsmap={"s": SOAP_NS})
        header = etree.SubElement(envelope, f"{{{SOAP_NS}}}Header")
        etree.SubElement(header, _t("ServerVersionInfo"), SERVER_VERSION, nsmap={"h": TYPES_NS})
        body = etree.SubElement(envelope, f"{{{SOAP_NS}}}Body")
        body.append(body_child)
        headers = {"Content-Type": CONTENT_TYPE}
        if layer:
            headers[DENIAL_HEADER] = layer
        content = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
        return httpx.Response(status, headers=headers, content=content)

    def _fault(
        self,
        code: str,
        message: str,
        message_xml: dict[str, str] | None = None,
        *,
        layer: str | None = None,
    ) -> httpx.Response:
        fault = etree.Element(f"{{{SOAP_NS}}}Fault", nsmap={"s": SOAP_NS})
        faultcode = etree.SubElement(fault, "faultcode", nsmap={"a": TYPES_NS})
        faultcode.text = f"a:{code}"
        _sub(fault, "faultstring", message, **{f"{{{XML_NS}}}lang": "en-US"})
        detail = etree.SubElement(fault, "detail")
        # Each errors-namespace child declares its own prefix, as Exchange writes it.
        for name, text in (("ResponseCode", code), ("Message", message)):
            etree.SubElement(detail, f"{{{ERRORS_NS}}}{name}", nsmap={"e": ERRORS_NS}).text = text
        if message_xml:
            xml = etree.SubElement(detail, _t("MessageXml"), nsmap={"t": TYPES_NS})
            for name, value in message_xml.items():
                _sub(xml, _t(name), value)
        return self._soap(500, fault, layer=layer)

    @staticmethod
    def _response(operation: str, messages: Iterable[Any]) -> Any:
        response = etree.Element(
            _m(f"{operation}Response"), nsmap={"m": MESSAGES_NS, "t": TYPES_NS}
        )
        container = etree.SubElement(response, _m("ResponseMessages"))
        for message in messages:
            container.append(message)
        return response

    @staticmethod
    def _message(operation: str, response_class: str = "Success", code: str = "NoError") -> Any:
        message = etree.Element(_m(f"{operation}ResponseMessage"), ResponseClass=response_class)
        _sub(message, _m("ResponseCode"), code)
        return message

    @staticmethod
    def _error_message(operation: str, code: str, text: str, response_class: str = "Error") -> Any:
        message = etree.Element(_m(f"{operation}ResponseMessage"), ResponseClass=response_class)
        _sub(message, _m("MessageText"), text)
        _sub(message, _m("ResponseCode"), code)
        _sub(message, _m("DescriptiveLinkKey"), "0")
        return message

    # --- folders --------------------------------------------------------------------------------

    @staticmethod
    def folder_id(user: User, key: str) -> str:
        """The stable EWS id of folder ``key`` in ``user``'s mailbox."""
        digest = hashlib.sha256(f"{user.id.lower()}/{key}".encode()).digest()
        return base64.b64encode(_ID_PREFIX + digest[:30]).decode()

    @staticmethod
    def change_key(user: User, key: str) -> str:
        """The folder's change key (folders never change in the emulator)."""
        digest = hashlib.sha256(f"ck/{user.id.lower()}/{key}".encode()).digest()
        return base64.b64encode(b"\x01\x00\x00\x00\x16\x00\x00\x00" + digest[:14]).decode()

    def _folder_by_id(self, user: User, folder_id: str) -> _Folder | None:
        """The folder an id names; raises ErrorInvalidIdMalformed for a string that is no folder id."""
        try:
            raw = base64.b64decode(folder_id, validate=True)
        except ValueError:
            raw = b""
        if not raw.startswith(_ID_PREFIX) or len(raw) != len(_ID_PREFIX) + 30:
            raise _BadRequest("ErrorInvalidIdMalformed", ID_MALFORMED)
        return next((f for f in FOLDERS if self.folder_id(user, f.key) == folder_id), None)

    def _target(
        self, element: Any, user: User, claims: dict[str, Any]
    ) -> tuple[User, _Folder] | _ItemError:
        """Resolve a t:FolderId / t:DistinguishedFolderId to (mailbox owner, folder).

        A folder id names a folder of the impersonated mailbox only; a distinguished id may name
        another mailbox (``t:Mailbox``), which the same access rules then cover.
        """
        local = etree.QName(element).localname
        if local == "FolderId":
            try:
                folder = self._folder_by_id(user, element.get("Id", ""))
            except _BadRequest as bad:
                return _ItemError(bad.code, bad.message)
            if folder is None:
                return _ItemError("ErrorFolderNotFound", FOLDER_NOT_FOUND)
            return user, folder
        if local != "DistinguishedFolderId":
            return _ItemError("ErrorInvalidIdMalformed", ID_MALFORMED)
        owner = user
        address = element.findtext(f"{_t('Mailbox')}/{_t('EmailAddress')}")
        if address and address.strip():
            other = self.em.exchange.has_mailbox(address.strip())
            if other is None:
                return _ItemError("ErrorNonExistentMailbox", NO_MAILBOX)
            if other.id != user.id:
                # Another mailbox than the impersonated one: the same access rules apply to it.
                roles = claims.get("roles")
                decision = self.em.exchange.ews_decision(
                    str(claims.get("appid", "")),
                    str(claims.get("oid", "")),
                    [str(r) for r in roles] if isinstance(roles, list) else [],
                    address.strip(),
                )
                if not decision.allowed:
                    return _ItemError("ErrorAccessDenied", decision.detail or "Access is denied.")
                owner = other
        folder = _BY_KEY.get(element.get("Id", ""))
        if folder is None:
            return _ItemError("ErrorFolderNotFound", FOLDER_NOT_FOUND)
        return owner, folder

    @staticmethod
    def _children(key: str) -> list[_Folder]:
        return [f for f in FOLDERS if f.parent == key]

    def _descendants(self, key: str) -> Iterator[_Folder]:
        for child in self._children(key):
            yield child
            yield from self._descendants(child.key)

    @staticmethod
    def _shape(operation: Any) -> frozenset[str]:
        shape = operation.find(_m("FolderShape"))
        base = shape.findtext(_t("BaseShape")) if shape is not None else None
        if base is None or base.strip() not in _SHAPES:
            raise _BadRequest(
                "ErrorSchemaValidation",
                "The request failed schema validation: FolderShape/BaseShape must be IdOnly, "
                "Default or AllProperties.",
            )
        wanted = set(_SHAPES[base.strip()])
        extra = shape.find(_t("AdditionalProperties"))
        if extra is not None:
            for path in extra.iter(_t("FieldURI")):
                uri = path.get("FieldURI", "")
                if uri.startswith("folder:") and uri[7:] in _PROPERTY_ORDER:
                    wanted.add(uri[7:])
        return frozenset(wanted)

    def _folder_element(
        self, parent: Any, user: User, folder: _Folder, wanted: frozenset[str]
    ) -> None:
        element = _sub(parent, _t(folder.element))
        for prop in _PROPERTY_ORDER:
            if prop not in wanted:
                continue
            if prop == "FolderId":
                _sub(
                    element,
                    _t("FolderId"),
                    Id=self.folder_id(user, folder.key),
                    ChangeKey=self.change_key(user, folder.key),
                )
            elif prop == "ParentFolderId" and folder.parent is not None:
                _sub(
                    element,
                    _t("ParentFolderId"),
                    Id=self.folder_id(user, folder.parent),
                    ChangeKey=self.change_key(user, folder.parent),
                )
            elif prop == "FolderClass" and folder.folder_class is not None:
                _sub(element, _t("FolderClass"), folder.folder_class)
            elif prop == "DisplayName":
                _sub(element, _t("DisplayName"), folder.name)
            elif prop == "TotalCount":
                _sub(element, _t("TotalCount"), "0")
            elif prop == "ChildFolderCount":
                _sub(element, _t("ChildFolderCount"), str(len(self._children(folder.key))))
            elif prop == "EffectiveRights":
                rights = _sub(element, _t("EffectiveRights"))
                for right in (
                    "CreateAssociated",
                    "CreateContents",
                    "CreateHierarchy",
                    "Delete",
                    "Modify",
                    "Read",
                    "ViewPrivateItems",
                ):
                    _sub(rights, _t(right), "true")
            elif prop == "DistinguishedFolderId":
                _sub(element, _t("DistinguishedFolderId"), folder.key)
            elif prop == "UnreadCount" and folder.element in _HAS_UNREAD:
                _sub(element, _t("UnreadCount"), "0")

    @staticmethod
    def _ids(operation: Any, container: str) -> list[Any]:
        found = operation.find(_m(container))
        ids = [c for c in found if isinstance(c.tag, str)] if found is not None else []
        if not ids:
            raise _BadRequest(
                "ErrorSchemaValidation",
                f"The request failed schema validation: {container} must contain at least one folder id.",
            )
        return ids

    # --- operations -----------------------------------------------------------------------------

    def _op_GetFolder(self, operation: Any, user: User, claims: dict[str, Any]) -> Any:  # noqa: N802
        wanted = self._shape(operation)
        messages = []
        for element in self._ids(operation, "FolderIds"):
            target = self._target(element, user, claims)
            if isinstance(target, _ItemError):
                messages.append(self._error_message("GetFolder", target.code, target.text))
                continue
            owner, folder = target
            message = self._message("GetFolder")
            self._folder_element(_sub(message, _m("Folders")), owner, folder, wanted)
            messages.append(message)
        return self._response("GetFolder", messages)

    def _op_FindFolder(self, operation: Any, user: User, claims: dict[str, Any]) -> Any:  # noqa: N802
        wanted = self._shape(operation)
        traversal = operation.get("Traversal", "")
        if traversal not in ("Shallow", "Deep", "SoftDeleted"):
            raise _BadRequest(
                "ErrorSchemaValidation",
                "The request failed schema validation: Traversal must be Shallow, Deep or SoftDeleted.",
            )
        messages = []
        for element in self._ids(operation, "ParentFolderIds"):
            target = self._target(element, user, claims)
            if isinstance(target, _ItemError):
                messages.append(self._error_message("FindFolder", target.code, target.text))
                continue
            owner, parent = target
            if traversal == "Shallow":
                found = self._children(parent.key)
            elif traversal == "Deep":
                found = list(self._descendants(parent.key))
            else:
                found = []  # nothing is ever soft-deleted here
            page, attrs = self._page(operation, found)
            message = self._message("FindFolder")
            root = _sub(message, _m("RootFolder"), **attrs)
            folders = _sub(root, _t("Folders"))
            for folder in page:
                self._folder_element(folders, owner, folder, wanted)
            messages.append(message)
        return self._response("FindFolder", messages)

    @staticmethod
    def _page(operation: Any, found: list[_Folder]) -> tuple[list[_Folder], dict[str, str]]:
        total = len(found)
        indexed = operation.find(_m("IndexedPageFolderView"))
        fractional = operation.find(_m("FractionalPageFolderView"))
        view = indexed if indexed is not None else fractional
        limit = total
        if view is not None and view.get("MaxEntriesReturned"):
            limit = max(int(view.get("MaxEntriesReturned")), 0)
        if fractional is not None:
            numerator = int(fractional.get("Numerator", "0"))
            denominator = max(int(fractional.get("Denominator", "1")), 1)
            start = min(total, numerator * total // denominator)
            page = found[start : start + limit]
            end = start + len(page)
            return page, {
                "NumeratorOffset": str(end),
                "AbsoluteDenominator": str(total),
                "IncludesLastItemInRange": "true" if end >= total else "false",
                "TotalItemsInView": str(total),
            }
        offset = int(indexed.get("Offset", "0")) if indexed is not None else 0
        if indexed is not None and indexed.get("BasePoint") == "End":
            end = max(total - offset, 0)
            start = max(end - limit, 0)
        else:
            start = min(offset, total)
            end = min(start + limit, total)
        page = found[start:end]
        return page, {
            "IndexedPagingOffset": str(end),
            "TotalItemsInView": str(total),
            "IncludesLastItemInRange": "true" if end >= total else "false",
        }

    def _op_ResolveNames(self, operation: Any, user: User, claims: dict[str, Any]) -> Any:  # noqa: N802
        entries = operation.findall(_m("UnresolvedEntry"))
        if len(entries) != 1 or not (entries[0].text or "").strip():
            raise _BadRequest(
                "ErrorSchemaValidation",
                "The request failed schema validation: ResolveNames takes exactly one non-empty "
                "UnresolvedEntry.",
            )
        full = operation.get("ReturnFullContactData", "false").strip().lower() in ("true", "1")
        found = self._resolve(entries[0].text.strip())
        if not found:
            message = self._error_message(
                "ResolveNames", "ErrorNameResolutionNoResults", "No results were found."
            )
            return self._response("ResolveNames", [message])
        if len(found) == 1:
            message = self._message("ResolveNames")
        else:
            message = self._error_message(
                "ResolveNames",
                "ErrorNameResolutionMultipleResults",
                "Multiple results were found.",
                response_class="Warning",
            )
        resolutions = _sub(
            message,
            _m("ResolutionSet"),
            TotalItemsInView=str(len(found)),
            IncludesLastItemInRange="true",
        )
        for recipient in found:
            resolution = _sub(resolutions, _t("Resolution"))
            mailbox = _sub(resolution, _t("Mailbox"))
            _sub(mailbox, _t("Name"), recipient.name)
            _sub(mailbox, _t("EmailAddress"), recipient.smtp)
            _sub(mailbox, _t("RoutingType"), "SMTP")
            _sub(mailbox, _t("MailboxType"), "Mailbox" if recipient.user else "PublicDL")
            if full:
                contact = _sub(resolution, _t("Contact"))
                _sub(contact, _t("DisplayName"), recipient.name)
                addresses = _sub(contact, _t("EmailAddresses"))
                _sub(addresses, _t("Entry"), f"SMTP:{recipient.smtp}", Key="EmailAddress1")
                _sub(contact, _t("ContactSource"), "ActiveDirectory")
        return self._response("ResolveNames", [message])

    def _resolve(self, entry: str) -> list[Recipient]:
        """Exact identity first (address, alias, name); then ambiguous name resolution by prefix."""
        if entry.lower().startswith("smtp:"):
            entry = entry[5:]
        exchange = self.em.exchange
        found = exchange.find(entry)
        if not found:
            key = entry.lower()
            found = [
                r
                for r in exchange.recipients()
                if r.smtp.lower().startswith(key)
                or any(word.startswith(key) for word in r.name.lower().split())
                or r.name.lower().startswith(key)
            ]
        unique = {r.smtp.lower(): r for r in found}
        return sorted(unique.values(), key=lambda r: (r.name.lower(), r.smtp.lower()))[:100]

    def _op_ConvertId(self, operation: Any, user: User, claims: dict[str, Any]) -> Any:  # noqa: N802
        # Ids are opaque and never converted here; exchangelib's version probe (a dummy id) only
        # needs the per-item error and the ServerVersionInfo header.
        sources = operation.find(_m("SourceIds"))
        count = len([c for c in sources if isinstance(c.tag, str)]) if sources is not None else 0
        if count == 0:
            raise _BadRequest(
                "ErrorSchemaValidation",
                "The request failed schema validation: SourceIds must contain at least one id.",
            )
        return self._response(
            "ConvertId",
            (
                self._error_message("ConvertId", "ErrorInvalidIdMalformed", ID_MALFORMED)
                for _ in range(count)
            ),
        )
