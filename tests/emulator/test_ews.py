"""EWS (SOAP) at /EWS/Exchange.asmx: driven by exchangelib, the production client, and by hand for
the wire details. Every request and answer is also checked against Microsoft's EWS schema set by
the autouse ``ews_conformance`` fixture (tests/conftest.py)."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import requests
import requests.adapters
from exchangelib import (
    DELEGATE,
    IMPERSONATION,
    OAUTH2,
    Account,
    Configuration,
    Identity,
    OAuth2Credentials,
    Version,
    close_connections,
)
from exchangelib import errors as xl_errors
from exchangelib.protocol import BaseProtocol
from exchangelib.version import EXCHANGE_O365
from lxml import etree  # type: ignore[import-untyped]

from mim_o365 import FakeClock
from mim_o365._wellknown import EXCHANGE_APP_ID, FULL_ACCESS_AS_APP_ID
from mim_o365.emulator import Emulator, EmulatorServer, Knobs, Lag, RequestsAdapter
from tests.conformance.ews_schema import (
    ERRORS_NS,
    MESSAGES_NS,
    SOAP_NS,
    TYPES_NS,
    EwsConformanceError,
    EwsConformanceLog,
    EwsSchema,
)
from tests.helpers import EXCHANGE, admin_headers, claims, create_app, http, token_response

IN_PROCESS = "https://emulator.test"
NS = {"s": SOAP_NS, "t": TYPES_NS, "m": MESSAGES_NS, "e": ERRORS_NS}
WWW_AUTHENTICATE = (
    'Bearer client_id="00000002-0000-0ff1-ce00-000000000000", '
    'trusted_issuers="00000001-0000-0000-c000-000000000000@*", '
    'token_types="app_asserted_user_v1 service_asserted_app_v1", '
    'authorization_uri="https://login.windows.net/common/oauth2/authorize", '
    'error="invalid_token"'
)
OUTSIDER = "alex.wilber@contoso.onmicrosoft.com"
MEMBER = "megan.bowen@contoso.onmicrosoft.com"


# --- tenant preparation -------------------------------------------------------------------------


@dataclass
class App:
    """An app registered for EWS: its credentials and service principal."""

    app_id: str
    object_id: str
    sp_id: str
    secret: str


def _admin(em: Emulator) -> tuple[httpx.Client, dict[str, str]]:
    client = http(em)
    return client, admin_headers(client, em)


def register_app(
    em: Emulator, *, consent: bool = True, allow_list: bool = True, name: str = "EWS app"
) -> App:
    """Through the Graph API: app, service principal, secret, full_access_as_app; then the allow list."""
    client, h = _admin(em)
    app = create_app(client, h, name)
    sp = client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}, headers=h)
    assert sp.status_code == 201, sp.text
    secret = client.post(f"/v1.0/applications/{app['id']}/addPassword", json={}, headers=h)
    assert secret.status_code == 200, secret.text
    if consent:
        exo = client.get(f"/v1.0/servicePrincipals(appId='{EXCHANGE_APP_ID}')", headers=h).json()
        r = client.post(
            f"/v1.0/servicePrincipals/{exo['id']}/appRoleAssignedTo",
            json={
                "principalId": sp.json()["id"],
                "resourceId": exo["id"],
                "appRoleId": FULL_ACCESS_AS_APP_ID,
            },
            headers=h,
        )
        assert r.status_code == 201, r.text
    if allow_list:
        allow(em, app["appId"])
    return App(app["appId"], app["id"], sp.json()["id"], secret.json()["secretText"])


def allow(em: Emulator, app_id: str) -> None:
    """Set-OrganizationConfig -EwsAllowedAppIDs "<existing>,<app>" (read-modify-write)."""
    existing = em.directory.state.exchange.org.ews_allowed_app_ids
    em.exchange.set_org({"EwsAllowedAppIDs": f"{existing},{app_id}" if existing else app_id})


def ews_token(em: Emulator, app: App, scope: str = EXCHANGE) -> str:
    r = token_response(http(em), em, app.app_id, app.secret, scope)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def restrict_to_group(em: Emulator, app: App, *members: str, right: str = "RestrictAccess") -> str:
    """A mail-enabled security group holding ``members`` and an access policy scoped to it."""
    name = f"EWS {right} {len(em.directory.state.exchange.groups)}"
    group = em.exchange.new_security_group(name)
    for member in members:
        em.exchange.add_member(group.primary_smtp, member)
    em.exchange.new_policy(app.app_id, group.primary_smtp, right, None)
    return group.primary_smtp


# --- hand-written SOAP ----------------------------------------------------------------------------


def envelope(body: str, mailbox: str | None = None, *, header: str | None = None) -> bytes:
    """A SOAP 1.1 request as exchangelib writes it; ``mailbox`` becomes the impersonated one."""
    if header is None:
        header = '<t:RequestServerVersion Version="Exchange2016"/>'
        if mailbox is not None:
            header += (
                "<t:ExchangeImpersonation><t:ConnectingSID>"
                f"<t:PrimarySmtpAddress>{mailbox}</t:PrimarySmtpAddress>"
                "</t:ConnectingSID></t:ExchangeImpersonation>"
            )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{SOAP_NS}" xmlns:t="{TYPES_NS}" xmlns:m="{MESSAGES_NS}">'
        f"<s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def get_folder(*ids: str, shape: str = "IdOnly", extra: str = "") -> str:
    folder_ids = "".join(
        i if i.startswith("<") else f'<t:DistinguishedFolderId Id="{i}"/>'
        for i in ids or ("inbox",)
    )
    return (
        f"<m:GetFolder><m:FolderShape><t:BaseShape>{shape}</t:BaseShape>{extra}</m:FolderShape>"
        f"<m:FolderIds>{folder_ids}</m:FolderIds></m:GetFolder>"
    )


def find_folder(parent: str = "msgfolderroot", traversal: str = "Shallow", view: str = "") -> str:
    return (
        f'<m:FindFolder Traversal="{traversal}"><m:FolderShape><t:BaseShape>Default</t:BaseShape>'
        f"</m:FolderShape>{view}<m:ParentFolderIds>"
        f'<t:DistinguishedFolderId Id="{parent}"/></m:ParentFolderIds></m:FindFolder>'
    )


def resolve_names(entry: str, full: bool = False) -> str:
    return (
        f'<m:ResolveNames ReturnFullContactData="{str(full).lower()}">'
        f"<m:UnresolvedEntry>{entry}</m:UnresolvedEntry></m:ResolveNames>"
    )


def post(
    em: Emulator,
    token: str | None,
    content: bytes,
    *,
    anchor: str | None = None,
    method: str = "POST",
    path: str = "/EWS/Exchange.asmx",
) -> httpx.Response:
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if anchor is not None:
        headers["X-AnchorMailbox"] = anchor
    return http(em).request(method, path, content=content, headers=headers)


def xml(response: httpx.Response) -> Any:
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    return etree.fromstring(response.content)


def server_version(root: Any) -> dict[str, str]:
    info = root.find("s:Header/t:ServerVersionInfo", NS)
    assert info is not None, "no ServerVersionInfo in the SOAP header"
    return dict(info.attrib)


def fault(response: httpx.Response) -> tuple[str, str, str]:
    """(faultcode, detail ResponseCode, faultstring) of a SOAP fault answer."""
    assert response.status_code == 500, response.text
    root = xml(response)
    f = root.find("s:Body/s:Fault", NS)
    assert f is not None, response.text
    code = f.find("faultcode")
    prefix, _, local = code.text.partition(":")
    assert code.nsmap[prefix] == TYPES_NS
    assert f.find("faultstring").get("{http://www.w3.org/XML/1998/namespace}lang") == "en-US"
    assert f.findtext("detail/e:Message", namespaces=NS) == f.findtext("faultstring")
    return local, f.findtext("detail/e:ResponseCode", namespaces=NS), f.findtext("faultstring")


def messages(response: httpx.Response, operation: str) -> list[Any]:
    assert response.status_code == 200, response.text
    root = xml(response)
    return list(
        root.iterfind(
            f"s:Body/m:{operation}Response/m:ResponseMessages/m:{operation}ResponseMessage", NS
        )
    )


def diagnostics(response: httpx.Response) -> str:
    assert response.status_code == 401
    assert response.content == b""
    assert response.headers["WWW-Authenticate"] == WWW_AUTHENTICATE
    return response.headers["x-ms-diagnostics"]


# --- exchangelib ---------------------------------------------------------------------------------


class EmulatorCredentials(OAuth2Credentials):  # type: ignore[misc]
    """exchangelib's client-credentials OAuth with the token endpoint of another authority.

    exchangelib hard-codes ``https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`` and the
    scope ``https://outlook.office365.com/.default`` as properties; overriding them is the
    supported way to point it elsewhere (sovereign clouds, the emulator).
    """

    def __init__(self, *args: Any, authority: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.authority = authority

    @property
    def token_url(self) -> str:
        return f"{self.authority}/{self.tenant_id}/oauth2/v2.0/token"

    @property
    def scope(self) -> list[str]:
        return [EXCHANGE]


def trusting_adapter(ca_file: str | os.PathLike[str]) -> type[requests.adapters.HTTPAdapter]:
    """An HTTPAdapter that verifies TLS against ``ca_file`` whatever the caller asked for.

    exchangelib builds its adapters itself (``HTTP_ADAPTER_CLS(pool_block=..., pool_connections=...,
    pool_maxsize=..., max_retries=0)``) for both the EWS endpoint and the token endpoint, so the CA
    travels in the class.
    """

    ca = os.fspath(ca_file)

    class TrustingAdapter(requests.adapters.HTTPAdapter):
        def send(
            self,
            request: requests.PreparedRequest,
            stream: bool = False,
            timeout: Any = None,
            verify: bool | str = True,
            cert: Any = None,
            proxies: Any = None,
        ) -> requests.Response:
            return super().send(
                request, stream=stream, timeout=timeout, verify=ca, cert=cert, proxies=proxies
            )

    return TrustingAdapter


def in_process_adapter(em: Emulator) -> type[requests.adapters.BaseAdapter]:
    """exchangelib's adapter class answered in-process by ``em`` (it passes pool kwargs we ignore)."""

    class EmulatorAdapter(RequestsAdapter):
        def __init__(self, **_pool: Any) -> None:
            super().__init__(em)

    return EmulatorAdapter


@pytest.fixture(autouse=True)
def _fresh_exchangelib() -> Iterator[None]:
    """exchangelib caches protocols (sessions, versions) per endpoint and credentials."""
    close_connections()
    yield
    close_connections()


@pytest.fixture
def xl(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> XL:
    monkeypatch.setattr(BaseProtocol, "HTTP_ADAPTER_CLS", in_process_adapter(emulator))
    return XL(emulator, IN_PROCESS)


@dataclass
class XL:
    """Builds exchangelib accounts against an emulator at ``base``."""

    em: Emulator
    base: str

    def credentials(self, app: App, *, identity: str | None = None) -> EmulatorCredentials:
        return EmulatorCredentials(
            client_id=app.app_id,
            client_secret=app.secret,
            tenant_id=self.em.tenant_id,
            identity=Identity(primary_smtp_address=identity) if identity else None,
            authority=self.base,
        )

    def config(
        self, app: App, *, version: bool = True, identity: str | None = None
    ) -> Configuration:
        return Configuration(
            service_endpoint=f"{self.base}/EWS/Exchange.asmx",
            credentials=self.credentials(app, identity=identity),
            auth_type=OAUTH2,
            version=Version(build=EXCHANGE_O365, api_version="Exchange2016") if version else None,
        )

    def account(
        self,
        app: App,
        mailbox: str | None = None,
        *,
        access_type: str = IMPERSONATION,
        version: bool = True,
        identity: str | None = None,
    ) -> Account:
        return Account(
            mailbox or self.em.mailbox,
            config=self.config(app, version=version, identity=identity),
            autodiscover=False,
            access_type=access_type,
        )


# =================================================================================================
# Success through exchangelib
# =================================================================================================


def test_exchangelib_get_folder_inbox_over_https(
    server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production path: real TLS against the emulator's CA, exchangelib's own token request."""
    monkeypatch.setattr(BaseProtocol, "HTTP_ADAPTER_CLS", trusting_adapter(server.ca_file))
    em = server.emulator
    app = register_app(em)
    account = XL(em, server.base_url).account(app)
    inbox = account.inbox
    assert inbox.name == "Inbox"
    assert inbox.id
    assert inbox.changekey
    assert em.count("identity", method="POST", path="/oauth2/v2.0/token") >= 1
    assert em.count("ews", method="POST") == 2  # GetFolder root, then GetFolder inbox
    assert em.statuses()[200] >= 3


def test_untrusting_adapter_cannot_reach_the_https_emulator(
    server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(BaseProtocol, "HTTP_ADAPTER_CLS", requests.adapters.HTTPAdapter)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    app = register_app(server.emulator)
    # exchangelib's first request is its own token request, which fails TLS verification.
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        _ = XL(server.emulator, server.base_url).account(app).inbox
    assert server.emulator.count("ews") == 0


def test_exchangelib_get_folder_inbox_in_process(xl: XL) -> None:
    app = register_app(xl.em)
    account = xl.account(app)
    inbox = account.inbox
    assert (inbox.name, inbox.folder_class) == ("Inbox", "IPF.Note")
    assert (inbox.total_count, inbox.unread_count, inbox.child_folder_count) == (0, 0, 0)
    assert inbox.parent.name == "Top of Information Store"
    assert account.version.build.major_version == 15
    assert account.version.build.minor_version == 20


def test_exchangelib_walks_the_folder_tree(xl: XL) -> None:
    """Root.children / walk: GetFolder of every well-known folder, then FindFolder Deep."""
    account = xl.account(register_app(xl.em))
    children = {f.name for f in account.root.children}
    assert children == {"Top of Information Store", "Recoverable Items"}
    walked = {f.name: type(f).__name__ for f in account.root.walk()}
    assert walked["Inbox"] == "Inbox"
    assert walked["Calendar"] == "Calendar"
    assert walked["Contacts"] == "Contacts"
    assert walked["Tasks"] == "Tasks"
    assert walked["Deletions"] == "RecoverableItemsDeletions"
    assert len(walked) == 18
    top = account.msg_folder_root
    assert {f.name for f in top.children} >= {"Inbox", "Sent Items", "Drafts", "Deleted Items"}
    assert (account.root / "Top of Information Store" / "Inbox").id == account.inbox.id
    assert xl.em.count("ews", path="/EWS/Exchange.asmx") >= 3


def test_exchangelib_resolve_names(xl: XL) -> None:
    app = register_app(xl.em)
    # A protocol-level call: impersonation comes from the credentials' identity.
    protocol = xl.account(app, identity=xl.em.mailbox).protocol
    [alex] = protocol.resolve_names(["alex.wilber"])
    assert (alex.name, alex.email_address) == ("Alex Wilber", OUTSIDER)
    assert (alex.routing_type, alex.mailbox_type) == ("SMTP", "Mailbox")
    [by_address] = protocol.resolve_names([MEMBER])
    assert by_address.name == "Megan Bowen"
    [missing] = protocol.resolve_names(["nobody-here"])
    assert isinstance(missing, xl_errors.ErrorNameResolutionNoResults)
    several = protocol.resolve_names(["m"])  # ambiguous: a Warning with every candidate
    assert {m.email_address for m in several} == {xl.em.mailbox, MEMBER}
    [(mailbox, contact)] = protocol.resolve_names(["helpdesk"], return_full_contact_data=True)
    assert mailbox.name == contact.display_name == "Helpdesk"


def test_exchangelib_version_probe_gets_server_version_from_every_answer(xl: XL) -> None:
    """Without a configured version exchangelib first sends ConvertId with a dummy id."""
    app = register_app(xl.em)
    # Protocol-level probe without impersonation: a fault, but one carrying ServerVersionInfo.
    account = xl.account(app, version=False)
    assert account.version.build.major_version == 15
    assert account.version.build.minor_version == 20
    assert account.inbox.name == "Inbox"
    close_connections()
    # With an identity the probe is impersonated: a per-item ErrorInvalidIdMalformed.
    account = xl.account(app, version=False, identity=xl.em.mailbox)
    assert account.version.build.minor_version == 20


# =================================================================================================
# Denials: each layer's wire form and what exchangelib raises
# =================================================================================================


def test_no_permission_is_401_2000008_and_unauthorized_in_exchangelib(xl: XL) -> None:
    app = register_app(xl.em, consent=False)
    token = ews_token(xl.em, app)
    assert "roles" not in claims(token)
    r = post(xl.em, token, envelope(get_folder(), xl.em.mailbox), anchor=xl.em.mailbox)
    assert diagnostics(r) == (
        '2000008;reason="The token contains no permissions, or permissions can not be '
        'understood.";error_category="invalid_grant"'
    )
    assert r.headers["X-Emulator-Denial"] == "no_permission"
    with pytest.raises(xl_errors.UnauthorizedError):
        _ = xl.account(app).inbox


def test_app_not_on_allow_list_is_403(xl: XL) -> None:
    app = register_app(xl.em, allow_list=False)
    r = post(xl.em, ews_token(xl.em, app), envelope(get_folder(), xl.em.mailbox))
    assert (r.status_code, r.content) == (403, b"")
    assert r.headers["X-Emulator-Denial"] == "not_allow_listed"
    with pytest.raises(xl_errors.MalformedResponseError, match="Code: 403"):
        _ = xl.account(app).inbox


def test_ews_disabled_for_the_organization_is_403(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    em = Emulator(seed=5, clock=clock, knobs=Knobs(ews_enabled=False))
    monkeypatch.setattr(BaseProtocol, "HTTP_ADAPTER_CLS", in_process_adapter(em))
    app = register_app(em)
    r = post(em, ews_token(em, app), envelope(get_folder(), em.mailbox))
    assert (r.status_code, r.content) == (403, b"")
    assert r.headers["X-Emulator-Denial"] == "ews_disabled"
    with pytest.raises(xl_errors.MalformedResponseError, match="Code: 403"):
        _ = XL(em, IN_PROCESS).account(app).inbox


def test_ews_disabled_by_set_org_config_is_403(xl: XL) -> None:
    app = register_app(xl.em)
    token = ews_token(xl.em, app)
    assert post(xl.em, token, envelope(get_folder(), xl.em.mailbox)).status_code == 200
    xl.em.exchange.set_org({"EwsEnabled": False})
    r = post(xl.em, token, envelope(get_folder(), xl.em.mailbox))
    assert (r.status_code, r.headers["X-Emulator-Denial"]) == (403, "ews_disabled")


def test_restrict_access_policy_blocks_mailboxes_outside_its_group(xl: XL) -> None:
    app = register_app(xl.em)
    restrict_to_group(xl.em, app, xl.em.mailbox)
    token = ews_token(xl.em, app)
    inside = post(xl.em, token, envelope(get_folder(), xl.em.mailbox))
    assert inside.status_code == 200
    outside = post(xl.em, token, envelope(get_folder(), OUTSIDER))
    assert (outside.status_code, outside.content) == (403, b"")
    assert outside.headers["X-Emulator-Denial"] == "access_policy"
    assert xl.account(app).inbox.name == "Inbox"
    with pytest.raises(xl_errors.MalformedResponseError, match="Code: 403"):
        _ = xl.account(app, OUTSIDER).inbox


def test_deny_access_beats_restrict_access(xl: XL) -> None:
    app = register_app(xl.em)
    restrict_to_group(xl.em, app, xl.em.mailbox, MEMBER)
    restrict_to_group(xl.em, app, MEMBER, right="DenyAccess")
    token = ews_token(xl.em, app)
    assert post(xl.em, token, envelope(get_folder(), xl.em.mailbox)).status_code == 200
    denied = post(xl.em, token, envelope(get_folder(), MEMBER))
    assert (denied.status_code, denied.headers["X-Emulator-Denial"]) == (403, "access_policy")
    with pytest.raises(xl_errors.MalformedResponseError, match="Code: 403"):
        _ = xl.account(app, MEMBER).inbox


def test_rbac_for_applications_scope(xl: XL) -> None:
    """No full_access_as_app: Application EWS.AccessAsApp scoped to a group decides per mailbox."""
    app = register_app(xl.em, consent=False)
    group = xl.em.exchange.new_security_group("EWS scope", members=[xl.em.mailbox])
    xl.em.exchange.new_exo_service_principal(app.app_id, app.sp_id, None)
    xl.em.exchange.new_role_assignment(
        app.app_id,
        "Application EWS.AccessAsApp",
        custom_scope=None,
        group_scope=group.primary_smtp,
        name=None,
    )
    token = ews_token(xl.em, app)
    assert post(xl.em, token, envelope(get_folder(), xl.em.mailbox)).status_code == 200
    outside = post(xl.em, token, envelope(get_folder(), OUTSIDER))
    assert (outside.status_code, outside.headers["X-Emulator-Denial"]) == (403, "rbac_scope")


def test_unknown_mailbox_is_a_non_existent_mailbox_fault(xl: XL) -> None:
    app = register_app(xl.em)
    nobody = f"nobody@{xl.em.tenant_domain}"
    r = post(xl.em, ews_token(xl.em, app), envelope(get_folder(), nobody), anchor=nobody)
    assert fault(r) == (
        "ErrorNonExistentMailbox",
        "ErrorNonExistentMailbox",
        "The SMTP address has no mailbox associated with it.",
    )
    assert r.headers["X-Emulator-Denial"] == "mailbox_missing"
    server_version(xml(r))
    with pytest.raises(xl_errors.ErrorNonExistentMailbox):
        _ = xl.account(app, nobody).inbox
    # A user without a mailbox is no different.
    r = post(
        xl.em, ews_token(xl.em, app), envelope(get_folder(), f"contractor@{xl.em.tenant_domain}")
    )
    assert fault(r)[0] == "ErrorNonExistentMailbox"


def test_missing_impersonation_header_is_a_fault(xl: XL) -> None:
    app = register_app(xl.em)
    r = post(xl.em, ews_token(xl.em, app), envelope(get_folder()))
    assert fault(r) == (
        "ErrorInvalidExchangeImpersonationHeaderData",
        "ErrorInvalidExchangeImpersonationHeaderData",
        "ExchangeImpersonation SOAP header must be present for this type of OAuth token.",
    )
    assert r.headers["X-Emulator-Denial"] == "no_impersonation"
    with pytest.raises(xl_errors.ErrorInvalidExchangeImpersonationHeaderData):
        _ = xl.account(app, access_type=DELEGATE).inbox


def test_missing_impersonation_comes_after_the_permission_and_ews_checks(xl: XL) -> None:
    no_roles = register_app(xl.em, consent=False, name="no roles")
    assert post(xl.em, ews_token(xl.em, no_roles), envelope(get_folder())).status_code == 401
    not_listed = register_app(xl.em, allow_list=False, name="not listed")
    assert post(xl.em, ews_token(xl.em, not_listed), envelope(get_folder())).status_code == 403


def test_malformed_impersonation_header_is_a_fault(
    xl: XL, ews_conformance: EwsConformanceLog
) -> None:
    ews_conformance.check_requests = False  # an empty SmtpAddress breaks the schema on purpose
    app = register_app(xl.em)
    header = (
        '<t:RequestServerVersion Version="Exchange2016"/><t:ExchangeImpersonation><t:ConnectingSID>'
        "<t:SmtpAddress> </t:SmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>"
    )
    r = post(xl.em, ews_token(xl.em, app), envelope(get_folder(), header=header))
    code, _, text = fault(r)
    assert code == "ErrorInvalidExchangeImpersonationHeaderData"
    assert "malformed" in text


def test_soap_knob_answers_policy_blocks_with_per_item_access_denied(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    em = Emulator(seed=9, clock=clock, knobs=Knobs(ews_denial="soap"))
    monkeypatch.setattr(BaseProtocol, "HTTP_ADAPTER_CLS", in_process_adapter(em))
    app = register_app(em, allow_list=False)
    token = ews_token(em, app)
    r = post(em, token, envelope(get_folder("inbox", "drafts"), em.mailbox))
    found = messages(r, "GetFolder")
    assert len(found) == 2
    for message in found:
        assert message.get("ResponseClass") == "Error"
        assert message.findtext("m:ResponseCode", namespaces=NS) == "ErrorAccessDenied"
        assert message.findtext("m:MessageText", namespaces=NS) == (
            f"Application {app.app_id} is not in EwsAllowedAppIDs."
        )
    assert r.headers["X-Emulator-Denial"] == "not_allow_listed"
    server_version(xml(r))
    # A policy block reads differently, so the layer shows in the text too.
    allow(em, app.app_id)
    restrict_to_group(em, app, em.mailbox)
    [blocked] = messages(post(em, token, envelope(get_folder(), OUTSIDER)), "GetFolder")
    assert "RestrictAccess" in blocked.findtext("m:MessageText", namespaces=NS)
    [resolved] = messages(
        post(em, token, envelope(resolve_names("alex"), OUTSIDER)), "ResolveNames"
    )
    assert resolved.findtext("m:ResponseCode", namespaces=NS) == "ErrorAccessDenied"
    with pytest.raises(xl_errors.ErrorAccessDenied):
        _ = XL(em, IN_PROCESS).account(app, OUTSIDER).inbox
    # Permissions and missing mailboxes keep their own wire forms under the knob.
    other = register_app(em, name="unrestricted")
    missing = post(em, ews_token(em, other), envelope(get_folder(), f"x@{em.tenant_domain}"))
    assert fault(missing)[0] == "ErrorNonExistentMailbox"
    no_roles = register_app(em, consent=False, name="no roles")
    assert post(em, ews_token(em, no_roles), envelope(get_folder(), em.mailbox)).status_code == 401


def test_each_denial_layer_is_distinguishable_on_the_wire(xl: XL) -> None:
    em = xl.em
    seen: dict[str, tuple[int, str]] = {}

    def record(layer: str, r: httpx.Response) -> None:
        detail = r.headers.get("x-ms-diagnostics", "")[:7] if r.status_code == 401 else ""
        if r.status_code == 500:
            detail = fault(r)[1]
        seen[layer] = (r.status_code, detail or r.headers.get("X-Emulator-Denial", ""))

    no_roles = register_app(em, consent=False, name="a")
    record("no_permission", post(em, ews_token(em, no_roles), envelope(get_folder(), em.mailbox)))
    unlisted = register_app(em, allow_list=False, name="b")
    record(
        "not_allow_listed", post(em, ews_token(em, unlisted), envelope(get_folder(), em.mailbox))
    )
    restricted = register_app(em, name="c")
    restrict_to_group(em, restricted, em.mailbox)
    record("access_policy", post(em, ews_token(em, restricted), envelope(get_folder(), OUTSIDER)))
    ok = register_app(em, name="d")
    token = ews_token(em, ok)
    record("mailbox_missing", post(em, token, envelope(get_folder(), f"z@{em.tenant_domain}")))
    record("no_impersonation", post(em, token, envelope(get_folder())))
    em.exchange.set_org({"EwsEnabled": False})
    record("ews_disabled", post(em, token, envelope(get_folder(), em.mailbox)))
    assert seen == {
        "no_permission": (401, "2000008"),
        "not_allow_listed": (403, "not_allow_listed"),
        "access_policy": (403, "access_policy"),
        "mailbox_missing": (500, "ErrorNonExistentMailbox"),
        "no_impersonation": (500, "ErrorInvalidExchangeImpersonationHeaderData"),
        "ews_disabled": (403, "ews_disabled"),
    }


# =================================================================================================
# Propagation delay of policies and the allow list
# =================================================================================================


def test_allow_list_change_takes_effect_after_the_policy_lag(clock: FakeClock) -> None:
    em = Emulator(seed=11, clock=clock, knobs=Knobs(policy=Lag(seconds=120)))
    app = register_app(em)  # put on the allow list just now
    token = ews_token(em, app)
    body = envelope(get_folder(), em.mailbox)
    assert post(em, token, body).status_code == 403
    clock.advance(119)
    assert post(em, token, body).status_code == 403
    clock.advance(1)
    assert post(em, token, body).status_code == 200


def test_access_policy_takes_effect_after_the_policy_lag(clock: FakeClock) -> None:
    em = Emulator(seed=12, clock=clock, knobs=Knobs(policy=Lag(seconds=60)))
    app = register_app(em)
    clock.advance(60)  # the allow list entry is enforced now
    token = ews_token(em, app)
    restrict_to_group(em, app, em.mailbox)
    outside = envelope(get_folder(), OUTSIDER)
    assert post(em, token, outside).status_code == 200  # the policy is not enforced yet
    clock.advance(60)
    r = post(em, token, outside)
    assert (r.status_code, r.headers["X-Emulator-Denial"]) == (403, "access_policy")
    assert post(em, token, envelope(get_folder(), em.mailbox)).status_code == 200


def test_disabling_ews_takes_effect_after_the_policy_lag(clock: FakeClock) -> None:
    em = Emulator(seed=13, clock=clock, knobs=Knobs(policy=Lag(seconds=30)))
    app = register_app(em)
    clock.advance(30)
    token = ews_token(em, app)
    em.exchange.set_org({"EwsEnabled": False})
    assert post(em, token, envelope(get_folder(), em.mailbox)).status_code == 200
    clock.advance(30)
    assert post(em, token, envelope(get_folder(), em.mailbox)).status_code == 403


# =================================================================================================
# Tokens: 401 with x-ms-diagnostics
# =================================================================================================


def test_missing_and_garbage_tokens_are_2000001(emulator: Emulator) -> None:
    body = envelope(get_folder(), emulator.mailbox)
    missing = diagnostics(post(emulator, None, body))
    assert missing.startswith('2000001;reason="')
    assert missing.endswith('";error_category="invalid_token"')
    garbage = diagnostics(post(emulator, "not-a-jwt", body))
    assert garbage.startswith('2000001;reason="') and "invalid_token" in garbage
    r = http(emulator).post(
        "/EWS/Exchange.asmx", content=body, headers={"Authorization": "Basic dXNlcjpwdw=="}
    )
    assert diagnostics(r).startswith("2000001;")


def test_token_for_another_audience_is_2000003(emulator: Emulator) -> None:
    app = register_app(emulator)
    graph_token = ews_token(emulator, app, "https://graph.microsoft.com/.default")
    r = post(emulator, graph_token, envelope(get_folder(), emulator.mailbox))
    assert diagnostics(r) == (
        "2000003;reason=\"The audience claim value is invalid 'https://graph.microsoft.com'.\";"
        'error_category="invalid_resource"'
    )


def test_expired_token_is_2000001(emulator: Emulator, clock: FakeClock) -> None:
    app = register_app(emulator)
    token = ews_token(emulator, app)
    body = envelope(get_folder(), emulator.mailbox)
    assert post(emulator, token, body).status_code == 200
    clock.advance(3600)
    assert diagnostics(post(emulator, token, body)) == (
        '2000001;reason="The token has expired.";error_category="invalid_token"'
    )


def test_expired_token_through_exchangelib_is_unauthorized(xl: XL, clock: FakeClock) -> None:
    account = xl.account(register_app(xl.em))
    assert account.root.name == "Root"
    clock.advance(3600)  # the emulator's clock: exchangelib still believes its token is fresh
    with pytest.raises(xl_errors.UnauthorizedError):
        _ = account.inbox


def test_token_of_another_tenant_is_2000004(emulator: Emulator) -> None:
    app = register_app(emulator)
    forged = {**claims(ews_token(emulator, app)), "tid": "11111111-2222-3333-4444-555555555555"}
    r = post(emulator, emulator.tokens.issue(forged), envelope(get_folder(), emulator.mailbox))
    assert diagnostics(r) == (
        "2000004;reason=\"The tenant for tenant guid '11111111-2222-3333-4444-555555555555' does "
        'not exist.";error_category="invalid_tenant"'
    )


def test_delegated_token_is_not_accepted(emulator: Emulator) -> None:
    app = register_app(emulator)
    delegated = {**claims(ews_token(emulator, app)), "idtyp": "user", "scp": "EWS.AccessAsUser.All"}
    delegated.pop("roles", None)
    r = post(emulator, emulator.tokens.issue(delegated), envelope(get_folder(), emulator.mailbox))
    assert diagnostics(r).startswith("2000008;")


def test_signature_from_another_emulator_is_rejected(emulator: Emulator, clock: FakeClock) -> None:
    app = register_app(emulator)
    other = Emulator(seed=1234, clock=clock)
    foreign = other.tokens.issue(claims(ews_token(emulator, app)))
    assert diagnostics(
        post(emulator, foreign, envelope(get_folder(), emulator.mailbox))
    ).startswith("2000001;")


# =================================================================================================
# Wire details
# =================================================================================================


@pytest.fixture
def app_token(emulator: Emulator) -> str:
    return ews_token(emulator, register_app(emulator))


def test_get_folder_success_wire_form(emulator: Emulator, app_token: str) -> None:
    r = post(emulator, app_token, envelope(get_folder(), emulator.mailbox), anchor=emulator.mailbox)
    assert r.status_code == 200
    root = xml(r)
    assert server_version(root) == {
        "MajorVersion": "15",
        "MinorVersion": "20",
        "MajorBuildNumber": server_version(root)["MajorBuildNumber"],
        "MinorBuildNumber": server_version(root)["MinorBuildNumber"],
        "Version": "V2018_01_08",
    }
    info = root.find("s:Header/t:ServerVersionInfo", NS)
    assert info.prefix == "h"
    [message] = messages(r, "GetFolder")
    assert message.get("ResponseClass") == "Success"
    assert message.findtext("m:ResponseCode", namespaces=NS) == "NoError"
    [folder] = message.findall("m:Folders/t:Folder", NS)
    assert [etree.QName(c).localname for c in folder] == ["FolderId"]
    folder_id = folder.find("t:FolderId", NS)
    assert base64.b64decode(folder_id.get("Id"))
    assert folder_id.get("ChangeKey")


def test_x_anchor_mailbox_is_optional(emulator: Emulator, app_token: str) -> None:
    body = envelope(get_folder(), emulator.mailbox)
    with_anchor = post(emulator, app_token, body, anchor=emulator.mailbox)
    without = post(emulator, app_token, body)
    assert with_anchor.status_code == without.status_code == 200
    assert with_anchor.content == without.content


def test_default_shape_adds_counts_in_schema_order(emulator: Emulator, app_token: str) -> None:
    r = post(
        emulator,
        app_token,
        envelope(get_folder("inbox", "calendar", shape="Default"), emulator.mailbox),
    )
    inbox, calendar = (m.find("m:Folders", NS)[0] for m in messages(r, "GetFolder"))
    assert [etree.QName(c).localname for c in inbox] == [
        "FolderId",
        "DisplayName",
        "TotalCount",
        "ChildFolderCount",
        "UnreadCount",
    ]
    assert inbox.findtext("t:DisplayName", namespaces=NS) == "Inbox"
    # A calendar is a t:CalendarFolder, which has no UnreadCount.
    assert etree.QName(calendar).localname == "CalendarFolder"
    assert [etree.QName(c).localname for c in calendar] == [
        "FolderId",
        "DisplayName",
        "TotalCount",
        "ChildFolderCount",
    ]


def test_all_properties_and_additional_properties(emulator: Emulator, app_token: str) -> None:
    r = post(
        emulator, app_token, envelope(get_folder("inbox", shape="AllProperties"), emulator.mailbox)
    )
    [message] = messages(r, "GetFolder")
    folder = message.find("m:Folders/t:Folder", NS)
    assert [etree.QName(c).localname for c in folder] == [
        "FolderId",
        "ParentFolderId",
        "FolderClass",
        "DisplayName",
        "TotalCount",
        "ChildFolderCount",
        "EffectiveRights",
        "DistinguishedFolderId",
        "UnreadCount",
    ]
    extra = (
        '<t:AdditionalProperties><t:FieldURI FieldURI="folder:DisplayName"/>'
        '<t:FieldURI FieldURI="folder:PermissionSet"/></t:AdditionalProperties>'
    )
    r = post(emulator, app_token, envelope(get_folder("sentitems", extra=extra), emulator.mailbox))
    [message] = messages(r, "GetFolder")
    folder = message.find("m:Folders/t:Folder", NS)
    assert [etree.QName(c).localname for c in folder] == ["FolderId", "DisplayName"]
    assert folder.findtext("t:DisplayName", namespaces=NS) == "Sent Items"


def test_folder_ids_are_stable_and_resolvable(emulator: Emulator, app_token: str) -> None:
    def folder_id(mailbox: str, folder: str = "inbox") -> tuple[str, str]:
        r = post(emulator, app_token, envelope(get_folder(folder), mailbox))
        element = messages(r, "GetFolder")[0].find("m:Folders/t:Folder/t:FolderId", NS)
        return element.get("Id"), element.get("ChangeKey")

    first = folder_id(emulator.mailbox)
    assert folder_id(emulator.mailbox) == first
    assert folder_id(OUTSIDER)[0] != first[0]
    assert folder_id(emulator.mailbox, "drafts")[0] != first[0]
    by_id = f'<t:FolderId Id="{first[0]}" ChangeKey="{first[1]}"/>'
    r = post(emulator, app_token, envelope(get_folder(by_id, shape="Default"), emulator.mailbox))
    [message] = messages(r, "GetFolder")
    assert message.findtext("m:Folders/t:Folder/t:DisplayName", namespaces=NS) == "Inbox"
    # The same id does not name a folder in another mailbox.
    r = post(emulator, app_token, envelope(get_folder(by_id), OUTSIDER))
    assert (
        messages(r, "GetFolder")[0].findtext("m:ResponseCode", namespaces=NS)
        == "ErrorFolderNotFound"
    )


def test_per_item_errors_keep_server_version(emulator: Emulator, app_token: str) -> None:
    malformed = '<t:FolderId Id="not-an-id"/>'
    unknown_id = '<t:FolderId Id="{}"/>'.format(
        base64.b64encode(b"\x00\x03EMU" + bytes(30)).decode()
    )
    r = post(
        emulator,
        app_token,
        envelope(get_folder(malformed, unknown_id, "voicemail", "inbox"), emulator.mailbox),
    )
    found = messages(r, "GetFolder")
    codes = [m.findtext("m:ResponseCode", namespaces=NS) for m in found]
    assert codes == [
        "ErrorInvalidIdMalformed",
        "ErrorFolderNotFound",
        "ErrorFolderNotFound",
        "NoError",
    ]
    assert [m.get("ResponseClass") for m in found] == ["Error", "Error", "Error", "Success"]
    assert all(m.findtext("m:DescriptiveLinkKey", namespaces=NS) == "0" for m in found[:3])
    server_version(xml(r))


def test_distinguished_folder_of_another_mailbox(emulator: Emulator) -> None:
    app = register_app(emulator)
    token = ews_token(emulator, app)

    def other(address: str) -> str:
        return (
            f'<t:DistinguishedFolderId Id="inbox"><t:Mailbox><t:EmailAddress>{address}'
            "</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId>"
        )

    r = post(
        emulator,
        token,
        envelope(
            get_folder(other(OUTSIDER), other(f"q@{emulator.tenant_domain}")), emulator.mailbox
        ),
    )
    ok, missing = messages(r, "GetFolder")
    assert ok.get("ResponseClass") == "Success"
    assert missing.findtext("m:ResponseCode", namespaces=NS) == "ErrorNonExistentMailbox"
    # A policy that covers only the impersonated mailbox denies the other one per item.
    restrict_to_group(emulator, app, emulator.mailbox)
    [denied] = messages(
        post(emulator, token, envelope(get_folder(other(OUTSIDER)), emulator.mailbox)), "GetFolder"
    )
    assert denied.findtext("m:ResponseCode", namespaces=NS) == "ErrorAccessDenied"


def test_find_folder_shallow_and_deep(emulator: Emulator, app_token: str) -> None:
    def names(r: httpx.Response) -> list[str]:
        [message] = messages(r, "FindFolder")
        return [
            f.findtext("t:DisplayName", namespaces=NS)
            for f in message.find("m:RootFolder/t:Folders", NS)
        ]

    shallow = post(emulator, app_token, envelope(find_folder("root"), emulator.mailbox))
    assert names(shallow) == ["Top of Information Store", "Recoverable Items"]
    root_folder = messages(shallow, "FindFolder")[0].find("m:RootFolder", NS)
    assert dict(root_folder.attrib) == {
        "IndexedPagingOffset": "2",
        "TotalItemsInView": "2",
        "IncludesLastItemInRange": "true",
    }
    deep = names(post(emulator, app_token, envelope(find_folder("root", "Deep"), emulator.mailbox)))
    assert len(deep) == 18
    assert deep.index("Top of Information Store") < deep.index("Inbox")
    assert names(post(emulator, app_token, envelope(find_folder("inbox"), emulator.mailbox))) == []


def test_find_folder_paging(emulator: Emulator, app_token: str) -> None:
    view = '<m:IndexedPageFolderView MaxEntriesReturned="5" Offset="10" BasePoint="Beginning"/>'
    r = post(
        emulator,
        app_token,
        envelope(find_folder("msgfolderroot", "Shallow", view), emulator.mailbox),
    )
    [message] = messages(r, "FindFolder")
    root_folder = message.find("m:RootFolder", NS)
    assert root_folder.get("IndexedPagingOffset") == "13"
    assert root_folder.get("TotalItemsInView") == "13"
    assert root_folder.get("IncludesLastItemInRange") == "true"
    assert len(root_folder.find("t:Folders", NS)) == 3
    view = '<m:IndexedPageFolderView MaxEntriesReturned="4" Offset="0" BasePoint="Beginning"/>'
    r = post(
        emulator,
        app_token,
        envelope(find_folder("msgfolderroot", "Shallow", view), emulator.mailbox),
    )
    root_folder = messages(r, "FindFolder")[0].find("m:RootFolder", NS)
    assert root_folder.get("IncludesLastItemInRange") == "false"
    assert len(root_folder.find("t:Folders", NS)) == 4


def test_resolve_names_wire_form(emulator: Emulator, app_token: str) -> None:
    [one] = messages(
        post(emulator, app_token, envelope(resolve_names("alex"), emulator.mailbox)), "ResolveNames"
    )
    assert one.get("ResponseClass") == "Success"
    resolution_set = one.find("m:ResolutionSet", NS)
    assert resolution_set.get("TotalItemsInView") == "1"
    assert resolution_set.get("IncludesLastItemInRange") == "true"
    mailbox = resolution_set.find("t:Resolution/t:Mailbox", NS)
    assert [(etree.QName(c).localname, c.text) for c in mailbox] == [
        ("Name", "Alex Wilber"),
        ("EmailAddress", OUTSIDER),
        ("RoutingType", "SMTP"),
        ("MailboxType", "Mailbox"),
    ]
    [none] = messages(
        post(emulator, app_token, envelope(resolve_names("zzz"), emulator.mailbox)), "ResolveNames"
    )
    assert none.get("ResponseClass") == "Error"
    assert none.findtext("m:ResponseCode", namespaces=NS) == "ErrorNameResolutionNoResults"
    assert none.find("m:ResolutionSet", NS) is None
    [many] = messages(
        post(emulator, app_token, envelope(resolve_names("m"), emulator.mailbox)), "ResolveNames"
    )
    assert many.get("ResponseClass") == "Warning"
    assert many.findtext("m:ResponseCode", namespaces=NS) == "ErrorNameResolutionMultipleResults"
    assert len(many.findall("m:ResolutionSet/t:Resolution", NS)) == 2


def test_resolve_names_finds_groups_and_smtp_prefix(emulator: Emulator, app_token: str) -> None:
    group = emulator.exchange.new_security_group("MIM Mail Senders")
    r = post(
        emulator, app_token, envelope(resolve_names(f"SMTP:{group.primary_smtp}"), emulator.mailbox)
    )
    [message] = messages(r, "ResolveNames")
    mailbox = message.find("m:ResolutionSet/t:Resolution/t:Mailbox", NS)
    assert mailbox.findtext("t:Name", namespaces=NS) == "MIM Mail Senders"
    assert mailbox.findtext("t:MailboxType", namespaces=NS) == "PublicDL"


def test_resolve_names_takes_one_entry(
    emulator: Emulator, app_token: str, ews_conformance: EwsConformanceLog
) -> None:
    ews_conformance.check_requests = False  # two UnresolvedEntry elements break the schema
    body = (
        '<m:ResolveNames ReturnFullContactData="false"><m:UnresolvedEntry>alex</m:UnresolvedEntry>'
        "<m:UnresolvedEntry>megan</m:UnresolvedEntry></m:ResolveNames>"
    )
    assert (
        fault(post(emulator, app_token, envelope(body, emulator.mailbox)))[0]
        == "ErrorSchemaValidation"
    )


def test_convert_id_answers_per_item_with_server_version(
    emulator: Emulator, app_token: str
) -> None:
    body = (
        '<m:ConvertId DestinationFormat="EntryId"><m:SourceIds>'
        '<t:AlternateId Format="EwsId" Id="DUMMY" Mailbox="DUMMY"/></m:SourceIds></m:ConvertId>'
    )
    r = post(emulator, app_token, envelope(body, emulator.mailbox))
    [message] = messages(r, "ConvertId")
    assert message.get("ResponseClass") == "Error"
    assert message.findtext("m:ResponseCode", namespaces=NS) == "ErrorInvalidIdMalformed"
    assert server_version(xml(r))["MinorVersion"] == "20"


def test_unknown_operation_is_invalid_request(
    emulator: Emulator, app_token: str, ews_conformance: EwsConformanceLog
) -> None:
    ews_conformance.check_requests = False
    r = post(emulator, app_token, envelope("<m:MakeCoffee/>", emulator.mailbox))
    assert fault(r) == ("ErrorInvalidRequest", "ErrorInvalidRequest", "The request is invalid.")
    server_version(xml(r))


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"<not xml",
        b"<?xml version='1.0'?><s:Envelope xmlns:s='http://schemas.xmlsoap.org/soap/envelope/'>",
        b"<root/>",
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header/></s:Envelope>',
        b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body/></s:Envelope>',
        "<é>".encode("latin-1"),
    ],
    ids=[
        "empty",
        "unclosed-tag",
        "unclosed-envelope",
        "no-envelope",
        "no-body",
        "soap12",
        "bad-encoding",
    ],
)
def test_malformed_xml_is_a_schema_validation_fault(
    emulator: Emulator, app_token: str, ews_conformance: EwsConformanceLog, content: bytes
) -> None:
    ews_conformance.check_requests = False
    r = post(emulator, app_token, content)
    code, response_code, text = fault(r)
    assert code == response_code == "ErrorSchemaValidation"
    assert text.startswith("The request failed schema validation")
    detail = xml(r).find("s:Body/s:Fault/detail/t:MessageXml", NS)
    assert [etree.QName(c).localname for c in detail] == ["LineNumber", "LinePosition", "Violation"]
    server_version(xml(r))


def test_entities_are_never_expanded(
    emulator: Emulator, app_token: str, ews_conformance: EwsConformanceLog
) -> None:
    ews_conformance.check_requests = False
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE s:Envelope [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>&c;</s:Body></s:Envelope>'
    )
    assert fault(post(emulator, app_token, laughs))[0] == "ErrorSchemaValidation"
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>&x;</s:Body></s:Envelope>'
    )
    r = post(emulator, app_token, xxe)
    assert fault(r)[0] == "ErrorSchemaValidation"
    assert b"root:" not in r.content


def test_malformed_xml_still_needs_a_valid_token(
    emulator: Emulator, ews_conformance: EwsConformanceLog
) -> None:
    ews_conformance.check_requests = False
    assert post(emulator, None, b"<garbage").status_code == 401


def test_only_post_is_served(
    emulator: Emulator, app_token: str, ews_conformance: EwsConformanceLog
) -> None:
    ews_conformance.check_requests = False  # empty bodies
    r = post(emulator, app_token, b"", method="GET")
    assert (r.status_code, r.headers["Allow"]) == (405, "POST")
    assert post(emulator, app_token, b"", method="PUT").status_code == 405
    lower = post(
        emulator, app_token, envelope(get_folder(), emulator.mailbox), path="/ews/exchange.asmx"
    )
    assert lower.status_code == 200
    assert post(emulator, app_token, b"", path="/EWS/Other.asmx").status_code == 404


def test_ews_answers_through_the_requests_session_too(emulator: Emulator, app_token: str) -> None:
    session = emulator.requests_session()
    r = session.post(
        f"{IN_PROCESS}/EWS/Exchange.asmx",
        data=envelope(get_folder(), emulator.mailbox),
        headers={"Authorization": f"Bearer {app_token}", "Content-Type": "text/xml; charset=utf-8"},
    )
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/xml; charset=utf-8"


# =================================================================================================
# The validator itself
# =================================================================================================


def _response_with(folder: str, code: str = "NoError") -> bytes:
    return (
        f'<s:Envelope xmlns:s="{SOAP_NS}"><s:Header><h:ServerVersionInfo xmlns:h="{TYPES_NS}" '
        'MajorVersion="15" MinorVersion="20" Version="V2018_01_08"/></s:Header><s:Body>'
        f'<m:GetFolderResponse xmlns:m="{MESSAGES_NS}" xmlns:t="{TYPES_NS}"><m:ResponseMessages>'
        f'<m:GetFolderResponseMessage ResponseClass="Success"><m:ResponseCode>{code}</m:ResponseCode>'
        f"<m:Folders><t:Folder>{folder}</t:Folder></m:Folders></m:GetFolderResponseMessage>"
        "</m:ResponseMessages></m:GetFolderResponse></s:Body></s:Envelope>"
    ).encode()


GOOD_FOLDER = (
    '<t:FolderId Id="AAA="/><t:DisplayName>Inbox</t:DisplayName><t:TotalCount>0</t:TotalCount>'
)


def test_validator_accepts_a_correct_response(ews_schema: EwsSchema) -> None:
    assert ews_schema.validate_envelope(_response_with(GOOD_FOLDER), direction="response") == 2


def test_validator_rejects_elements_out_of_order(ews_schema: EwsSchema) -> None:
    swapped = (
        '<t:FolderId Id="AAA="/><t:TotalCount>0</t:TotalCount><t:DisplayName>Inbox</t:DisplayName>'
    )
    with pytest.raises(
        EwsConformanceError, match=r"m:GetFolderResponse: .*DisplayName.*not expected"
    ):
        ews_schema.validate_envelope(_response_with(swapped), direction="response")


def test_validator_rejects_an_unknown_response_code(ews_schema: EwsSchema) -> None:
    with pytest.raises(EwsConformanceError, match=r"ResponseCode.*ErrorTeapot"):
        ews_schema.validate_envelope(
            _response_with(GOOD_FOLDER, "ErrorTeapot"), direction="response"
        )
    bad_fault = (
        f'<s:Envelope xmlns:s="{SOAP_NS}"><s:Header><h:ServerVersionInfo xmlns:h="{TYPES_NS}"/>'
        f'</s:Header><s:Body><s:Fault><faultcode xmlns:a="{TYPES_NS}">a:ErrorTeapot</faultcode>'
        f'<faultstring>no</faultstring><detail><e:ResponseCode xmlns:e="{ERRORS_NS}">ErrorTeapot'
        f'</e:ResponseCode><e:Message xmlns:e="{ERRORS_NS}">no</e:Message></detail></s:Fault>'
        "</s:Body></s:Envelope>"
    ).encode()
    with pytest.raises(
        EwsConformanceError, match=r"ErrorTeapot.*not a value of m:ResponseCodeType"
    ):
        ews_schema.validate_envelope(bad_fault, direction="response")


def test_validator_demands_server_version_and_an_envelope(ews_schema: EwsSchema) -> None:
    no_header = _response_with(GOOD_FOLDER).replace(
        b'<s:Header><h:ServerVersionInfo xmlns:h="http://schemas.microsoft.com/exchange/services/2006/types" '
        b'MajorVersion="15" MinorVersion="20" Version="V2018_01_08"/></s:Header>',
        b"",
    )
    with pytest.raises(EwsConformanceError, match="no t:ServerVersionInfo"):
        ews_schema.validate_envelope(no_header, direction="response")
    with pytest.raises(EwsConformanceError, match="not well-formed"):
        ews_schema.validate_envelope(b"<x", direction="request")
    with pytest.raises(EwsConformanceError, match=r"not a SOAP 1\.1 Envelope"):
        ews_schema.validate_envelope(b"<x/>", direction="request")


def test_validator_checks_requests_and_tolerates_only_newer_folder_ids(
    ews_schema: EwsSchema,
) -> None:
    assert ews_schema.validate_envelope(envelope(get_folder(), "a@b.c"), direction="request") == 3
    newer = envelope(get_folder("allitems"), "a@b.c")
    with pytest.raises(EwsConformanceError, match="allitems"):
        ews_schema.validate_envelope(newer, direction="request")
    ews_schema.validate_envelope(newer, direction="request", tolerate_folder_ids={"allitems"})
    bogus = envelope(get_folder("bogusfolder"), "a@b.c")
    with pytest.raises(EwsConformanceError, match="bogusfolder"):
        ews_schema.validate_envelope(bogus, direction="request", tolerate_folder_ids={"allitems"})


def test_conformance_fixture_sees_every_ews_exchange(
    emulator: Emulator, app_token: str, ews_conformance: EwsConformanceLog
) -> None:
    before = ews_conformance.checked
    post(emulator, app_token, envelope(get_folder(), emulator.mailbox))
    assert ews_conformance.checked == before + 2  # the request and the answer
    assert ews_conformance.violations == []


def test_conformance_log_records_violations(ews_schema: EwsSchema) -> None:
    log = EwsConformanceLog()
    log.check(ews_schema, _response_with(GOOD_FOLDER, "ErrorTeapot"), "response")
    log.check(ews_schema, _response_with(GOOD_FOLDER), "response")
    assert log.checked == 1
    assert len(log.violations) == 1 and "ErrorTeapot" in log.violations[0]
