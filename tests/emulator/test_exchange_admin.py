"""Exchange Online admin API of the emulator (``InvokeCommand``), against protocol.md §5.

Everything runs in-process through ``http(emulator)`` with an app-only token for Exchange Online.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from mim_o365 import FakeClock
from mim_o365._wellknown import EXCHANGE_APP_ID, EXCHANGE_MANAGE_AS_APP_ID
from mim_o365.emulator import Emulator, Knobs, Lag
from mim_o365.emulator._http.exchange_admin import CMDLETS
from tests.helpers import EXCHANGE, admin_headers, create_app, http, token_response

JSON = dict[str, Any]
Headers = dict[str, str]

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ODATA_SERVICE = "Microsoft.Exchange.Admin.OData.Core.ODataServiceException"
NOT_FOUND = "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException"
NAME_IN_USE = "Microsoft.Exchange.Data.Directory.ADObjectAlreadyExistsException"
ALREADY_MEMBER = "Microsoft.Exchange.Management.Tasks.MemberAlreadyExistsException"
NOT_MEMBER = "Microsoft.Exchange.Management.Tasks.MemberNotFoundException"
PARAMETER_SET = "Microsoft.Exchange.AdminApi.CommandInvocation.AmbiguousParameterSetException"
TRANSFORMATION = "Microsoft.Exchange.AdminApi.CommandInvocation.ParameterTransformationException"
COMMAND_NOT_FOUND = "System.Management.Automation.CommandNotFoundException"
GROUP_MANAGER = "Microsoft.Exchange.Configuration.Tasks.OperationRequiresGroupManagerException"
ARGUMENT = "System.ArgumentException"
MAILBOXES = {"MIMService", "admin", "alex.wilber", "megan.bowen", "helpdesk", "noreply"}
BYPASS = {"BypassSecurityGroupManagerCheck": True}


# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def client(emulator: Emulator) -> httpx.Client:
    return http(emulator)


@pytest.fixture
def exo(client: httpx.Client, emulator: Emulator) -> Headers:
    return exchange_headers(
        client, emulator, emulator.admin_client_id, emulator.admin_client_secret
    )


def exchange_headers(
    client: httpx.Client, emulator: Emulator, client_id: str, secret: str
) -> Headers:
    r = token_response(client, emulator, client_id, secret, scope=EXCHANGE)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def url(emulator: Emulator, tenant: str | None = None) -> str:
    return f"/adminapi/beta/{tenant or emulator.tenant_id}/InvokeCommand"


def invoke(
    client: httpx.Client,
    emulator: Emulator,
    headers: Headers,
    cmdlet: str,
    params: JSON | None = None,
    *,
    target: str | None = None,
    extra: Headers | None = None,
) -> httpx.Response:
    body = {"CmdletInput": {"CmdletName": cmdlet, "Parameters": params or {}}}
    return client.post(target or url(emulator), json=body, headers={**headers, **(extra or {})})


def rows(r: httpx.Response) -> list[JSON]:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["adminapi.warnings@odata.type"] == "#Collection(String)"
    assert isinstance(body["@adminapi.warnings"], list)
    value: list[JSON] = body["value"]
    assert isinstance(value, list)
    return value


def one(r: httpx.Response) -> JSON:
    value = rows(r)
    assert len(value) == 1, value
    return value[0]


def empty(r: httpx.Response) -> list[str]:
    """A Set-/Add-/Remove- success: no rows; returns the warnings."""
    assert rows(r) == []
    warnings: list[str] = r.json()["@adminapi.warnings"]
    return warnings


def cmdlet_error(r: httpx.Response, exception_type: str, *, details: bool = True) -> str:
    """Assert the §5.3 envelope for ``exception_type``; return the real text."""
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert error["code"] == "BadRequest"
    assert error["message"] == "Invalid Operation"
    inner = error["innererror"]
    assert inner["message"] == "Invalid Operation"
    assert inner["type"] == ODATA_SERVICE
    assert inner["stacktrace"] == ""
    internal = inner["internalexception"]
    assert internal["type"] == exception_type, internal
    assert internal["stacktrace"] == ""
    text: str = internal["message"]
    assert text
    if details:
        assert error["details"] == [
            {"code": "Client", "target": "", "message": f"|{exception_type}|{text}"}
        ]
    else:
        assert "details" not in error
    return text


def forbidden(r: httpx.Response) -> None:
    assert r.status_code == 403
    assert r.content and set(r.content) == {0}
    with pytest.raises(ValueError):  # noqa: PT011 - json's own error type
        json.loads(r.content)


def graph(client: httpx.Client, emulator: Emulator) -> Headers:
    return admin_headers(client, emulator)


def new_group(
    client: httpx.Client, emulator: Emulator, exo: Headers, name: str = "mim-ews", **extra: Any
) -> JSON:
    return one(
        invoke(
            client,
            emulator,
            exo,
            "New-DistributionGroup",
            {"Name": name, "Type": "Security", **extra},
        )
    )


def app_credentials(client: httpx.Client, emulator: Emulator, name: str) -> tuple[JSON, JSON, str]:
    """A new app with a service principal and a secret, made through Graph."""
    h = graph(client, emulator)
    app = create_app(client, h, name)
    r = client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}, headers=h)
    assert r.status_code == 201, r.text
    sp: JSON = r.json()
    r = client.post(f"/v1.0/applications/{app['id']}/addPassword", json={}, headers=h)
    assert r.status_code == 200, r.text
    return app, sp, str(r.json()["secretText"])


def user_token(emulator: Emulator, upn: str) -> Headers:
    """A delegated Exchange token for ``upn`` (as the EXO module's public client would get)."""
    user = next(u for u in emulator.directory.state.users.values() if u.user_principal_name == upn)
    now = int(emulator.clock.now().timestamp())
    token = emulator.tokens.issue(
        {
            "aud": "https://outlook.office365.com",
            "iss": f"https://sts.windows.net/{emulator.tenant_id}/",
            "appid": "fb78d390-0c51-40cd-8e17-fdbfab77341b",
            "idtyp": "user",
            "oid": user.id,
            "tid": emulator.tenant_id,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
        }
    )
    return {"Authorization": f"Bearer {token}"}


def org_config(client: httpx.Client, emulator: Emulator, exo: Headers) -> JSON:
    return one(
        invoke(
            client,
            emulator,
            exo,
            "Get-OrganizationConfig",
            {"RetrieveEwsOperationAccessPolicy": True},
        )
    )


def seeded_other_app(emulator: Emulator) -> str:
    return next(
        a.app_id
        for a in emulator.directory.state.applications.values()
        if a.display_name == "Contoso Archive Connector"
    )


# --- envelope, routing --------------------------------------------------------------------------


def test_success_envelope(client: httpx.Client, emulator: Emulator, exo: Headers) -> None:
    r = invoke(client, emulator, exo, "Get-Mailbox", {"Identity": "alex.wilber"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json;odata.metadata=minimal")
    assert GUID.match(r.headers["request-id"])
    assert r.headers["Rate-Limit-Limit"] == "30000"
    assert int(r.headers["Rate-Limit-Remaining"]) < 30000
    assert "Rate-Limit-Reset" in r.headers
    body = r.json()
    assert list(body) == [
        "@odata.context",
        "adminapi.warnings@odata.type",
        "@adminapi.warnings",
        "value",
    ]
    assert body["@odata.context"] == (
        f"https://emulator.test/adminapi/beta/{emulator.tenant_id}"
        "/$metadata#Collection(Exchange.GenericHashTable)"
    )
    assert body["@adminapi.warnings"] == []
    (mailbox,) = body["value"]
    assert mailbox["Identity"] == "alex.wilber"
    assert mailbox["Alias"] == "alex.wilber"
    assert mailbox["DisplayName"] == "Alex Wilber"
    assert mailbox["PrimarySmtpAddress"] == "alex.wilber@contoso.onmicrosoft.com"
    assert mailbox["RecipientTypeDetails"] == "UserMailbox"
    assert mailbox["Guid@odata.type"] == "#Guid"
    assert mailbox["Guid@data.type"] == "System.Guid"
    assert GUID.match(mailbox["Guid"])
    assert mailbox["EmailAddresses@odata.type"] == "#Collection(String)"
    assert mailbox["EmailAddresses"] == ["SMTP:alex.wilber@contoso.onmicrosoft.com"]
    user = emulator.exchange.has_mailbox("alex.wilber@contoso.onmicrosoft.com")
    assert user is not None
    assert mailbox["ExternalDirectoryObjectId"] == user.id
    assert mailbox["DistinguishedName"].startswith("CN=alex.wilber,")
    # annotations come right before the value they describe
    keys = list(mailbox)
    assert keys.index("Guid@odata.type") == keys.index("Guid") - 1


def test_tenant_by_initial_domain_and_case_insensitive_names(
    client: httpx.Client, emulator: Emulator, exo: Headers
) -> None:
    r = client.post(
        url(emulator, emulator.tenant_domain.upper()),
        json={"cmdletinput": {"cmdletname": "get-mailbox", "parameters": {"IDENTITY": "helpdesk"}}},
        headers=exo,
    )
    assert one(r)["Alias"] == "helpdesk"
    # the context always names the tenant by its GUID
    assert emulator.tenant_id in r.json()["@odata.context"]


def test_unknown_tenant_path_and_method(
    client: httpx.Client, emulator: Emulator, exo: Headers
) -> None:
    r = invoke(
        client, emulator, exo, "Get-Mailbox", target=url(emulator, "fabrikam.onmicrosoft.com")
    )
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "NotFound"
    r = invoke(
        client, emulator, exo, "Get-Mailbox", target=f"/adminapi/beta/{emulator.tenant_id}/Nope"
    )
    assert r.status_code == 404
    assert r.json()["error"]["message"]
    r = client.get(url(emulator), headers=exo)
    assert r.status_code == 405
    assert r.json()["error"]["code"] == "MethodNotAllowed"


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"[]",
        b'{"Cmdlet": {}}',
        b'{"CmdletInput": "Get-Mailbox"}',
        b'{"CmdletInput": {"Parameters": {}}}',
        b'{"CmdletInput": {"CmdletName": 5}}',
        b'{"CmdletInput": {"CmdletName": "Get-Mailbox", "Parameters": ["Identity"]}}',
    ],
)
def test_malformed_body_is_a_json_400(
    client: httpx.Client, emulator: Emulator, exo: Headers, content: bytes
) -> None:
    r = client.post(
        url(emulator), content=content, headers={**exo, "Content-Type": "application/json"}
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "BadRequest"
    assert error["message"]


def test_parameters_may_be_omitted_and_annotations_are_ignored(
    client: httpx.Client, emulator: Emulator, exo: Headers
) -> None:
    r = client.post(url(emulator), json={"CmdletInput": {"CmdletName": "Get-Mailbox"}}, headers=exo)
    assert len(rows(r)) == len(MAILBOXES)
    r = invoke(
        client,
        emulator,
        exo,
        "New-DistributionGroup",
        {
            "Name": "g1",
            "Type": "Security",
            "Members@odata.type": "#Collection(String)",
            "Members": ["admin"],
        },
    )
    assert one(r)["Name"] == "g1"


# --- errors -------------------------------------------------------------------------------------


def test_unknown_cmdlet(client: httpx.Client, emulator: Emulator, exo: Headers) -> None:
    text = cmdlet_error(invoke(client, emulator, exo, "Get-Nonsense"), COMMAND_NOT_FOUND)
    assert "'Get-Nonsense' is not recognized" in text


def test_unknown_parameter(client: httpx.Client, emulator: Emulator, exo: Headers) -> None:
    r = invoke(client, emulator, exo, "Get-Mailbox", {"Identity": "admin", "BogusParameter": 1})
    text = cmdlet_error(r, PARAMETER_SET)
    assert text == (
        "Parameter set cannot be resolved using the specified named parameters. "
        "Invalid cmdlet parameters specified. BogusParameter"
    )


def test_missing_mandatory_and_duplicate_parameters(
    client: httpx.Client, emulator: Emulator, exo: Headers
) -> None:
    text = cmdlet_error(
        invoke(client, emulator, exo, "Add-DistributionGroupMember", {}), PARAMETER_SET
    )
    assert "Identity, Member" in text
    r = invoke(client, emulator, exo, "Get-Mailbox", {"Identity": "admin", "identity": "helpdesk"})
    assert "more than once" in cmdlet_error(r, PARAMETER_SET)


def test_value_that_does_not_convert_has_no_details(
    client: httpx.Client, emulator: Emulator, exo: Headers
) -> None:
    r = invoke(client, emulator, exo, "New-DistributionGroup", {"Name": "x", "Type": "Nonsense"})
    text = cmdlet_error(r, TRANSFORMATION, details=False)
    assert (
        "Specify one of the following enumerator names and try again: Distribution, Security"
        in text
    )
    assert r.json()["error"]["@adminapi.warnings"] == []
    r = invoke(client, emulator, exo, "Set-OrganizationConfig", {"EwsEnabled": "yes"})
    assert "parameter 'EwsEnabled'" in cmdlet_error(r, TRANSFORMATION, details=False)
    r = invoke(client, emulator, exo, "Get-Mailbox", {"Identity": ""})
    assert "null or empty" in cmdlet_error(r, TRANSFORMATION, details=False)
    r = invoke(client, emulator, exo, "Get-Mailbox", {"Identity": {"a": 1}})
    cmdlet_error(r, TRANSFORMATION, details=False)


def test_not_found(client: httpx.Client, emulator: Emulator, exo: Headers) -> None:
    text = cmdlet_error(
        invoke(client, emulator, exo, "Get-Mailbox", {"Identity": "nobody"}), NOT_FOUND
    )
    assert "'nobody' couldn't be found" in text
    # a user without a mailbox is no mailbox, and a mailbox is no group
    r = invoke(
        client, emulator, exo, "Get-Mailbox", {"Identity": "contractor@contoso.onmicrosoft.com"}
    )
    cmdlet_error(r, NOT_FOUND)
    cmdlet_error(
        invoke(client, emulator, exo, "Get-DistributionGroup", {"Identity": "admin"}), NOT_FOUND
    )


CMDLET_NAMES = [c.name for c in CMDLETS]
ODD_VALUES: list[Any] = [None, 0, 7.5, True, "", "x", [], ["x", {}], {"a": 1}, ["admin"]]


@pytest.mark.parametrize("cmdlet", CMDLET_NAMES)
def test_never_a_500(client: httpx.Client, emulator: Emulator, exo: Headers, cmdlet: str) -> None:
    spec = next(c for c in CMDLETS if c.name == cmdlet)
    names = [*spec.params, "Confirm", "Verbose", "Nope"]
    for name in names:
        for value in ODD_VALUES:
            params = {n: "admin" for n, p in spec.params.items() if p.mandatory}
            params[name] = value
            r = invoke(client, emulator, exo, cmdlet, params)
            assert r.status_code in (200, 400), (cmdlet, name, value, r.text)
            body = r.json()
            assert ("value" in body) if r.status_code == 200 else ("error" in body)


# --- authentication and authorization -----------------------------------------------------------


def test_401_without_or_with_a_bad_token(
    client: httpx.Client, emulator: Emulator, clock: FakeClock, exo: Headers
) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "Basic abc"}):
        r = invoke(client, emulator, headers, "Get-Mailbox")
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"].startswith("Bearer ")
        assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
        assert r.json()["error"]["message"]
    clock.advance(4000)
    assert invoke(client, emulator, exo, "Get-Mailbox").status_code == 401


def test_401_for_a_graph_token(client: httpx.Client, emulator: Emulator) -> None:
    r = invoke(client, emulator, graph(client, emulator), "Get-Mailbox")
    assert r.status_code == 401
    assert "audience" in r.json()["error"]["message"]


def test_403_nul_body_without_manage_as_app_then_without_directory_role(
    client: httpx.Client, emulator: Emulator
) -> None:
    app, sp, secret = app_credentials(client, emulator, "no exchange role")
    headers = exchange_headers(client, emulator, app["appId"], secret)
    forbidden(invoke(client, emulator, headers, "Get-OrganizationConfig"))

    # Exchange.ManageAsApp consented, but no Entra directory role on the service principal
    exo_sp = emulator.directory.sp_by_app_id(EXCHANGE_APP_ID)
    assert exo_sp is not None
    r = client.post(
        f"/v1.0/servicePrincipals/{exo_sp.id}/appRoleAssignedTo",
        json={
            "principalId": sp["id"],
            "resourceId": exo_sp.id,
            "appRoleId": EXCHANGE_MANAGE_AS_APP_ID,
        },
        headers=graph(client, emulator),
    )
    assert r.status_code == 201, r.text
    headers = exchange_headers(client, emulator, app["appId"], secret)
    forbidden(invoke(client, emulator, headers, "Get-OrganizationConfig"))

    emulator.directory.state.service_principals[sp["id"]].directory_roles.append(
        "Exchange Administrator"
    )
    one(invoke(client, emulator, headers, "Get-OrganizationConfig"))


def test_directory_role_limits_what_a_caller_may_run(
    client: httpx.Client, emulator: Emulator, exo: Headers
) -> None:
    admin_sp = emulator.directory.sp_by_app_id(emulator.admin_client_id)
    assert admin_sp is not None
    admin_sp.directory_roles = ["Global Reader"]
    one(invoke(client, emulator, exo, "Get-OrganizationConfig"))
    forbidden(invoke(client, emulator, exo, "Set-OrganizationConfig", {"EwsEnabled": False}))
    admin_sp.directory_roles = ["Exchange Recipient Administrator"]
    new_group(client, emulator, exo)
    forbidden(
        invoke(
            client,
            emulator,
            exo,
            "New-ManagementScope",
            {"Name": "s", "RecipientRestrictionFilter": "Alias -eq 'x'"},
        )
    )


def test_delegated_admin_allowed_and_plain_user_forbidden(
    client: httpx.Client, emulator: Emulator
) -> None:
    admin = user_token(emulator, "admin@contoso.onmicrosoft.com")  # Global Administrator
    assert len(rows(invoke(client, emulator, admin, "Get-Mailbox"))) == len(MAILBOXES)
    forbidden(
        invoke(
            client,
            emulator,
            user_token(emulator, "alex.wilber@contoso.onmicrosoft.com"),
            "Get-Mailbox",
        )
    )


# --- recipients ---------------------------------------------------------------------------------


def test_get_mailbox_lists_every_mailbox(
    client: httpx.Client, emulator: Emulator, exo: Headers
) -> None:
    r = invoke(client, emulator, exo, "Get-Mailbox", {"ResultSize": "Unlimited"})
    assert {m["Alias"] for m in rows(r)} == MAILBOXES
    assert all(m["RecipientTypeDetails"] == "UserMailbox" for m in rows(r))


def test_get_recipient(client: httpx.Client, emulator: Emulator, exo: Headers) -> None:
    group = new_group(client, emulator, exo)
    every = rows(invoke(client, emulator, exo, "Get-Recipient", {"ResultSize": 1000}))
    assert {r["Alias"] for r in every} == MAILBOXES | {"mim-ews"}
    found = one(
        invoke(client, emulator, exo, "Get-Recipient", {"Identity": group["PrimarySmtpAddress"]})
    )
    assert found["RecipientTypeDetails"] == "MailUniversalSecurityGroup"
    r = invoke(
        client,
        emulator,
        exo,
        "Get-Recipient",
        {"RecipientTypeDetails": "MailUniversalSecurityGroup"},
    )
    assert [g["Name"] for g in rows(r)] == ["mim-ews"]


def test_new_distribution_group_shape_and_graph_visibility(
    client: httpx.Client, emulator: Emulator, exo: Headers
) -> None:
    group = new_group(
        client,
        emulator,
        exo,
        "MIM EWS access",
        Alias="mim-ews",
        PrimarySmtpAddress="mim-ews@contoso.onmicrosoft.com",
        Members=["MIMService@contoso.onmicrosoft.com"],
        Notes="scope of the MIM app",
    )
    assert group["Identity"] == group["Name"] == group["DisplayName"] == "MIM EWS access"
    assert group["Alias"] == "mim-ews"
    assert group["PrimarySmtpAddress"] == "mim-ews@contoso.onmicrosoft.com"
    assert group["RecipientTypeDetails"] == "MailUniversalSecurityGroup"
    assert group["GroupType"] == "Universal, SecurityEnabled"
    assert group["EmailAddresses"] == ["SMTP:mim-ews@contoso.onmicrosoft.com"]
    assert GUID.match(group["Guid"]) and group["Guid@odata.type"] == "#Guid"
    assert GUID.match(group["ExternalDirectoryObjectId"])
    assert group["WhenCreated@odata.type"] == "#DateTimeOffset"
    assert group["DistinguishedName"].startswith("CN=MIM EWS access,")

    h = graph(client, emulator)
    listed = client.get("/v1.0/groups", headers=h).json()["value"]
    entra = next(g for g in listed if g["id"] == group["ExternalDirectoryObjectId"])
    assert entra["mailEnabled"] is True and entra["securityEnabled"] is True
    assert entra["mail"] == "mim-ews@contoso.onmicrosoft.com"
    assert entra["displayName"] == "MIM EWS access"
    members = client.get(f"/v1.0/groups/{entra['id']}/members", headers=h).json()["value"]
    assert [m["userPrincipalName"] for m in members] == ["MIMService@contoso.onmicrosoft.com"]


def test_new_distribution_group_defaults_and_errors(
    client: httpx.Client, emulator: Emulator, exo: Headers
) -> None:
    group = new_group(client, emulator, exo, "mim ews")
    assert group["Alias"] == "mimews"
    assert group["PrimarySmtpAddress"] == "mimews@contoso.onmicrosoft.com"
    text = cmdlet_error(
        invoke(
            client, emulator, exo, "New-DistributionGroup", {"Name": "mim ews", "Type": "security"}
        ),
        NAME_IN_USE,
    )
    assert "already being used" in text
    for params in ({"Name": "d1"}, {"Name": "d1", "Type": "Distribution"}):
        r = invoke(client, emulator, exo, "New-DistributionGroup", params)
        assert "Type Security" in cmdlet_error(r, "System.NotSupportedException")
    r = invoke(
        client,
        emulator,
        exo,
        "New-DistributionGroup",
        {"Name": "g2", "Type": "Security", "Members": "nobody"},
    )
    cmdlet_error(r, NOT_FOUND)


def test_get_distribution_group_by_any_identity_and_select(
    client: httpx.Client, emulator: Emulator, exo: Headers
) -> None:
    group = new_group(client, emulator, exo)
    new_group(client, emulator, exo, "other")
    assert [g["Name"] for g in rows(invoke(client, emulator, exo, "Get-DistributionGroup"))] == [
        "mim-ews",
        "other",
    ]
    for key in (
        "Name",
        "PrimarySmtpAddress",
        "Guid",
        "ExternalDirectoryObjectId",
        "DistinguishedName",
    ):
        found = one(
            invoke(client, emulator, exo, "Get-DistributionGroup", {"Identity": group[key]})
        )
        assert found["Guid"] == group["Guid"], key
    r = invoke(
        client,
        emulator,
        exo,
        "Get-DistributionGroup",
        {"Identity": "mim-ews"},
        target=url(emulator) + "?$select=Guid,DisplayName,RecipientTypeDetails",
    )
    assert one(r) == {
        "Guid@data.type": "System.Guid",
        "Guid@odata.type": "#Guid",
        "Guid": group["Guid"],
        "DisplayName": "mim-ews",
        "RecipientTypeDetails": "MailUniversalSecurityGroup",
    }


def test_group_membership(client: httpx.Client, emulator: Emulator, exo: Headers) -> None:
    new_group(client, emulator, exo)
    add = {"Identity": "mim-ews", "Member": "MIMService@contoso.onmicrosoft.com"}
    # the caller manages no group, so it must bypass the manager check
    text = cmdlet_error(
        invoke(client, emulator, exo, "Add-DistributionGroupMember", add), GROUP_MANAGER
    )
    assert "manager of the group" in text
    assert (
        empty(invoke(client, emulator, exo, "Add-DistributionGroupMember", {**add, **BYPASS})) == []
    )
    text = cmdlet_error(
        invoke(client, emulator, exo, "Add-DistributionGroupMember", {**add, **BYPASS}),
        ALREADY_MEMBER,
    )
    assert "already a member" in text
    r = invoke(
        client,
        emulator,
        exo,
        "Add-DistributionGroupMember",
        {"Identity": "mim-ews", "Member": "nobody", **BYPASS},
    )
    cmdlet_error(r, NOT_FOUND)
    members = rows(
        invoke(client, emulator, exo, "Get-DistributionGroupMember", {"Identity": "mim-ews"})
    )
    assert [m["PrimarySmtpAddress"] for m in members] == ["MIMService@contoso.onmicrosoft.com"]
    empty(invoke(client, emulator, exo, "Remove-DistributionGroupMember", {**add, **BYPASS}))
    assert (
        rows(invoke(client, emulator, exo, "Get-DistributionGroupMember", {"Identity": "mim-ews"}))
        == []
    )
    cmdlet_error(
        invoke(client, emulator, exo, "Remove-DistributionGroupMember", {**add, **BYPASS}),
        NOT_MEMBER,
    )


def test_remove_distribution_group(client: httpx.Client, emulator: Emulator, exo: Headers) -> None:
    group = new_group(client, emulator, exo)
    cmdlet_error(
        invoke(client, emulator, exo, "Remove-DistributionGroup", {"Identity": "mim-ews"}),
        GROUP_MANAGER,
    )
    r = invoke(
        client,
        emulator,
        exo,
        "Remove-DistributionGroup",
        {"Identity": "mim-ews", "Confirm": False, **BYPASS},
    )
    empty(r)
    cmdlet_error(
        invoke(client, emulator, exo, "Get-DistributionGroup", {"Identity": "mim-ews"}), NOT_FOUND
    )
    r = client.get(
        f"/v1.0/groups/{group['ExternalDirectoryObjectId']}", headers=graph(client, emulator)
    )
    assert r.status_code == 404


# --- application access policies ----------------------------------------------------------------


def test_application_access_policy_lifecycle(clock: FakeClock) -> None:
    # a long policy delay: Test- answers from what was written, EWS has not caught up yet
    emulator = Emulator(seed=5, clock=clock, knobs=Knobs(policy=Lag(seconds=3600)))
    client = http(emulator)
    exo = exchange_headers(client, emulator, emulator.admin_client_id, emulator.admin_client_secret)
    group = new_group(client, emulator, exo, Members=["MIMService"])
    app_id = "11111111-2222-3333-4444-555555555555"
    policy = one(
        invoke(
            client,
            emulator,
            exo,
            "New-ApplicationAccessPolicy",
            {
                "AppId": app_id,
                "PolicyScopeGroupId": "mim-ews@contoso.onmicrosoft.com",
                "AccessRight": "RestrictAccess",
                "Description": "Restrict MIM app",
            },
        )
    )
    assert policy["Identity"].startswith(f"{emulator.tenant_id}\\{app_id}:S-1-5-21-")
    assert policy["Identity"].endswith(f";{group['Guid']}")
    assert policy["AppId"] == app_id
    assert policy["ScopeName"] == "mim-ews"
    assert policy["ScopeIdentity"] == "mim-ews"
    assert policy["AccessRight"] == "RestrictAccess"
    assert policy["Description"] == "Restrict MIM app"
    assert policy["IsValid"] is True

    def test(mailbox: str) -> JSON:
        return one(
            invoke(
                client,
                emulator,
                exo,
                "Test-ApplicationAccessPolicy",
                {"Identity": mailbox, "AppId": app_id},
            )
        )

    granted = test("MIMService@contoso.onmicrosoft.com")
    assert granted["AccessCheckResult"] == "Granted"
    assert granted["AppId"] == app_id
    assert granted["Mailbox"] == "MIMService"
    assert GUID.match(granted["MailboxId"])
    assert granted["MailboxSid"].startswith("S-1-5-21-")
    assert test("alex.wilber@contoso.onmicrosoft.com")["AccessCheckResult"] == "Denied"
    alex = emulator.exchange.has_mailbox("alex.wilber@contoso.onmicrosoft.com")
    assert alex is not None
    assert (
        emulator.exchange.policy_verdict(app_id, alex, effective=True)[0] is True
    )  # not enforced yet
    assert test("alex.wilber")["AccessCheckResult"] == "Denied"
    # another app is not restricted at all
    r = invoke(
        client,
        emulator,
        exo,
        "Test-ApplicationAccessPolicy",
        {"Identity": "alex.wilber", "AppId": "99999999-2222-3333-4444-555555555555"},
    )
    assert one(r)["AccessCheckResult"] == "Granted"

    assert rows(invoke(client, emulator, exo, "Get-ApplicationAccessPolicy")) == [policy]
    assert (
        one(
            invoke(
                client,
                emulator,
                exo,
                "Get-ApplicationAccessPolicy",
                {"Identity": policy["Identity"]},
            )
        )
        == policy
    )
    set_params = {"Identity": policy["Identity"], "Description": "changed"}
    assert empty(invoke(client, emulator, exo, "Set-ApplicationAccessPolicy", set_params)) == []
    warnings = empty(invoke(client, emulator, exo, "Set-ApplicationAccessPolicy", set_params))
    assert warnings == [
        f"The command completed successfully but no settings of '{policy['Identity']}' have been modified."
    ]
    got = one(
        invoke(
            client, emulator, exo, "Get-ApplicationAccessPolicy", {"Identity": policy["Identity"]}
        )
    )
    assert got["Description"] == "changed"
    empty(
        invoke(
            client,
            emulator,
            exo,
            "Remove-ApplicationAccessPolicy",
            {"Identity": policy["Identity"]},
        )
    )
    r = invoke(
        client, emulator, exo, "Get-ApplicationAccessPolicy", {"Identity": policy["Identity"]}
    )
    cmdlet_error(r, NOT_FOUND)
    assert test("alex.wilber")["AccessCheckResult"] == "Granted"


def test_application_access_policy_errors(
    client: httpx.Client, emulator: Emulator, exo: Headers
) -> None:
    new_group(client, emulator, exo)
    base = {"AppId": "11111111-2222-3333-4444-555555555555", "PolicyScopeGroupId": "mim-ews"}
    r = invoke(
        client, emulator, exo, "New-ApplicationAccessPolicy", {**base, "AccessRight": "Everything"}
    )
    assert "RestrictAccess, DenyAccess" in cmdlet_error(r, TRANSFORMATION, details=False)
    r = invoke(
        client,
        emulator,
        exo,
        "New-ApplicationAccessPolicy",
        {**base, "AppId": "my-app", "AccessRight": "DenyAccess"},
    )
    cmdlet_error(r, ARGUMENT)
    r = invoke(
        client,
        emulator,
        exo,
        "New-ApplicationAccessPolicy",
        {**base, "PolicyScopeGroupId": "nobody", "AccessRight": "DenyAccess"},
    )
    cmdlet_error(r, NOT_FOUND)
    one(
        invoke(
            client,
            emulator,
            exo,
            "New-ApplicationAccessPolicy",
            {**base, "AccessRight": "RestrictAccess"},
        )
    )
    r = invoke(
        client,
        emulator,
        exo,
        "New-ApplicationAccessPolicy",
        {**base, "AccessRight": "RestrictAccess"},
    )
    cmdlet_error(r, NAME_IN_USE)
    r = invoke(
        client,
        emulator,
        exo,
        "Test-ApplicationAccessPolicy",
        {"Identity": "mim-ews", "AppId": base["AppId"]},
    )
    cmdlet_error(r, NOT_FOUND)  # a group is not a mailbox
    # a policy whose group is gone stays, but is no longer valid
    empty(
        invoke(client, emulator, exo, "Remove-DistributionGroup", {"Identity": "mim-ews", **BYPASS})
    )
    (policy,) = rows(invoke(client, emulator, exo, "Get-ApplicationAccessPolicy"))
    assert policy["IsValid"] is False


# --- organization config ------------------------------------------------------------------------


def test_get_organization_config(client: httpx.Client, emulator: Emulator, exo: Headers) -> None:
    plain = one(invoke(client, emulator, exo, "Get-OrganizationConfig"))
    assert plain["EwsEnabled"] is True
    for key in ("EwsApplicationAccessPolicy", "EwsAllowList", "EwsBlockList"):
        assert key in plain and plain[key] is None
    assert "EwsAllowedAppIDs" not in plain  # only with -RetrieveEwsOperationAccessPolicy
    assert plain["Name"] == emulator.tenant_domain
    full = org_config(client, emulator, exo)
    assert full["EwsAllowedAppIDs"] == seeded_other_app(emulator)


def test_organization_config_knobs(clock: FakeClock) -> None:
    emulator = Emulator(
        seed=3,
        clock=clock,
        knobs=Knobs(require_retrieve_switch=False, ews_allowed_ids_as_array=True),
    )
    client = http(emulator)
    exo = exchange_headers(client, emulator, emulator.admin_client_id, emulator.admin_client_secret)
    plain = one(invoke(client, emulator, exo, "Get-OrganizationConfig"))
    assert plain["EwsAllowedAppIDs"] == [seeded_other_app(emulator)]
    assert plain["EwsAllowedAppIDs@odata.type"] == "#Collection(String)"
    empty(invoke(client, emulator, exo, "Set-OrganizationConfig", {"EwsAllowedAppIDs": None}))
    assert one(invoke(client, emulator, exo, "Get-OrganizationConfig"))["EwsAllowedAppIDs"] is None


def test_set_organization_config_replaces_the_whole_list(
    client: httpx.Client, emulator: Emulator, exo: Headers
) -> None:
    other = seeded_other_app(emulator)
    mine = "11111111-2222-3333-4444-555555555555"
    # writing only our id drops the unrelated app: callers must read, merge, write
    empty(
        invoke(
            client,
            emulator,
            exo,
            "Set-OrganizationConfig",
            {"EwsEnabled": True, "EwsAllowedAppIDs": mine},
        )
    )
    assert org_config(client, emulator, exo)["EwsAllowedAppIDs"] == mine
    assert emulator.exchange.effective_org() == (True, [mine])

    merged = f"{other},{mine}"
    empty(invoke(client, emulator, exo, "Set-OrganizationConfig", {"EwsAllowedAppIDs": merged}))
    assert org_config(client, emulator, exo)["EwsAllowedAppIDs"] == merged

    # a JSON array is joined into the string
    empty(
        invoke(client, emulator, exo, "Set-OrganizationConfig", {"EwsAllowedAppIDs": [mine, other]})
    )
    assert org_config(client, emulator, exo)["EwsAllowedAppIDs"] == f"{mine},{other}"

    # null clears
    empty(invoke(client, emulator, exo, "Set-OrganizationConfig", {"EwsAllowedAppIDs": None}))
    assert org_config(client, emulator, exo)["EwsAllowedAppIDs"] is None
    assert emulator.exchange.effective_org() == (True, None)

    r = invoke(client, emulator, exo, "Set-OrganizationConfig", {"EwsAllowedAppIDs": "MIM app"})
    cmdlet_error(r, ARGUMENT)


@pytest.mark.parametrize("value", [False, True, None])
def test_set_ews_enabled(
    client: httpx.Client, emulator: Emulator, exo: Headers, value: bool | None
) -> None:
    r = invoke(client, emulator, exo, "Set-OrganizationConfig", {"EwsEnabled": value})
    assert empty(r) == (
        [
            "The command completed successfully but no settings of 'contoso.onmicrosoft.com' have been modified."
        ]
        if value is True
        else []
    )
    assert one(invoke(client, emulator, exo, "Get-OrganizationConfig"))["EwsEnabled"] is value
    assert emulator.exchange.effective_org()[0] is value


def test_set_organization_config_without_changes_warns(
    client: httpx.Client, emulator: Emulator, exo: Headers
) -> None:
    other = seeded_other_app(emulator)
    for params in (
        {},
        {"EwsAllowedAppIDs": other},
        {"EwsEnabled": True, "EwsAllowedAppIDs": other},
    ):
        warnings = empty(invoke(client, emulator, exo, "Set-OrganizationConfig", params))
        assert warnings == [
            "The command completed successfully but no settings of 'contoso.onmicrosoft.com' have been modified."
        ]


# --- RBAC for Applications ----------------------------------------------------------------------


def test_rbac_for_applications(client: httpx.Client, emulator: Emulator, exo: Headers) -> None:
    app, sp, _ = app_credentials(client, emulator, "MIM EWS")
    new_group(client, emulator, exo, Members=["MIMService"])

    pointer = one(
        invoke(
            client,
            emulator,
            exo,
            "New-ServicePrincipal",
            {"AppId": app["appId"], "ServiceId": sp["id"], "DisplayName": "MIM EWS (Exchange)"},
        )
    )
    assert pointer["AppId"] == app["appId"]
    assert pointer["ObjectId"] == sp["id"]
    assert pointer["DisplayName"] == "MIM EWS (Exchange)"
    r = invoke(
        client, emulator, exo, "New-ServicePrincipal", {"AppId": app["appId"], "ObjectId": sp["id"]}
    )
    cmdlet_error(r, NAME_IN_USE)
    r = invoke(
        client,
        emulator,
        exo,
        "New-ServicePrincipal",
        {"AppId": app["appId"], "ObjectId": app["id"]},
    )
    cmdlet_error(r, ARGUMENT)  # the application's object id is not the service principal's
    assert rows(invoke(client, emulator, exo, "Get-ServicePrincipal")) == [pointer]
    assert (
        one(invoke(client, emulator, exo, "Get-ServicePrincipal", {"Identity": app["appId"]}))
        == pointer
    )

    group_filter = "MemberOfGroup -eq 'CN=mim-ews,OU=contoso.onmicrosoft.com'"
    scope = one(
        invoke(
            client,
            emulator,
            exo,
            "New-ManagementScope",
            {"Name": "MIM mailboxes", "RecipientRestrictionFilter": group_filter},
        )
    )
    assert scope["Name"] == "MIM mailboxes"
    assert scope["RecipientFilter"] == group_filter
    assert rows(invoke(client, emulator, exo, "Get-ManagementScope")) == [scope]
    r = invoke(
        client,
        emulator,
        exo,
        "New-ManagementScope",
        {"Name": "bad", "RecipientRestrictionFilter": "Department -like '*'"},
    )
    cmdlet_error(r, ARGUMENT)

    r = invoke(
        client,
        emulator,
        exo,
        "New-ManagementRoleAssignment",
        {
            "App": sp["id"],
            "Role": "Application EWS.AccessAsApp",
            "CustomResourceScope": "MIM mailboxes",
            "RecipientGroupScope": "mim-ews",
        },
    )
    cmdlet_error(r, PARAMETER_SET)
    r = invoke(
        client,
        emulator,
        exo,
        "New-ManagementRoleAssignment",
        {"App": sp["id"], "Role": "Mail Recipients"},
    )
    cmdlet_error(r, ARGUMENT)
    assignment = one(
        invoke(
            client,
            emulator,
            exo,
            "New-ManagementRoleAssignment",
            {
                "App": sp["id"],
                "Role": "Application EWS.AccessAsApp",
                "CustomResourceScope": "MIM mailboxes",
                "Name": "mim-ews-rbac",
            },
        )
    )
    assert assignment["Name"] == "mim-ews-rbac"
    assert assignment["Role"] == "Application EWS.AccessAsApp"
    assert assignment["RoleAssigneeType"] == "ServicePrincipal"
    assert assignment["CustomResourceScope"] == "MIM mailboxes"
    assert assignment["RecipientWriteScope"] == "CustomRecipientScope"
    by_group = one(
        invoke(
            client,
            emulator,
            exo,
            "New-ManagementRoleAssignment",
            {
                "App": app["appId"],
                "Role": "Application Mail.Read",
                "RecipientGroupScope": "mim-ews",
            },
        )
    )
    assert by_group["RecipientGroupScope"] == "mim-ews"
    assigned = rows(
        invoke(client, emulator, exo, "Get-ManagementRoleAssignment", {"App": sp["id"]})
    )
    assert [a["Name"] for a in assigned] == ["mim-ews-rbac", by_group["Name"]]
    r = invoke(
        client, emulator, exo, "Get-ManagementRoleAssignment", {"Role": "Application Mail.Read"}
    )
    assert [a["Name"] for a in rows(r)] == [by_group["Name"]]

    def authorization(resource: str) -> list[JSON]:
        return rows(
            invoke(
                client,
                emulator,
                exo,
                "Test-ServicePrincipalAuthorization",
                {"Identity": sp["id"], "Resource": resource},
            )
        )

    inside = authorization("MIMService@contoso.onmicrosoft.com")
    assert inside == [
        {
            "RoleName": "Application EWS.AccessAsApp",
            "GrantedPermissions": "EWS.AccessAsApp",
            "AllowedResourceScope": "MIM mailboxes",
            "ScopeType": "CustomRecipientScope",
            "InScope": True,
        },
        {
            "RoleName": "Application Mail.Read",
            "GrantedPermissions": "Mail.Read",
            "AllowedResourceScope": "mim-ews",
            "ScopeType": "RecipientGroupScope",
            "InScope": True,
        },
    ]
    assert [row["InScope"] for row in authorization("alex.wilber")] == [False, False]
    r = invoke(
        client, emulator, exo, "Test-ServicePrincipalAuthorization", {"Identity": app["appId"]}
    )
    assert [row["InScope"] for row in rows(r)] == [None, None]

    # a scope in use cannot go; the assignment first
    cmdlet_error(
        invoke(client, emulator, exo, "Remove-ManagementScope", {"Identity": "MIM mailboxes"}),
        ARGUMENT,
    )
    empty(
        invoke(
            client, emulator, exo, "Remove-ManagementRoleAssignment", {"Identity": "mim-ews-rbac"}
        )
    )
    cmdlet_error(
        invoke(
            client, emulator, exo, "Remove-ManagementRoleAssignment", {"Identity": "mim-ews-rbac"}
        ),
        NOT_FOUND,
    )
    empty(invoke(client, emulator, exo, "Remove-ManagementScope", {"Identity": "MIM mailboxes"}))
    assert rows(invoke(client, emulator, exo, "Get-ManagementScope")) == []
    # removing the service principal takes its remaining assignments with it
    empty(invoke(client, emulator, exo, "Remove-ServicePrincipal", {"Identity": sp["id"]}))
    assert rows(invoke(client, emulator, exo, "Get-ManagementRoleAssignment")) == []
    cmdlet_error(
        invoke(client, emulator, exo, "Get-ServicePrincipal", {"Identity": sp["id"]}), NOT_FOUND
    )


# --- paging -------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["Prefer", "X-Prefer"])
def test_paging_with_maxpagesize(
    client: httpx.Client, emulator: Emulator, exo: Headers, header: str
) -> None:
    prefer = {header: "odata.maxpagesize=2"}
    r = invoke(client, emulator, exo, "Get-Mailbox", extra=prefer)
    assert r.headers["Preference-Applied"] == "odata.maxpagesize=2"
    seen: list[str] = []
    pages = 0
    while True:
        page = rows(r)
        assert len(page) <= 2
        seen += [m["Alias"] for m in page]
        pages += 1
        link = r.json().get("@odata.nextLink")
        if link is None:
            break
        assert link.startswith(f"https://emulator.test{url(emulator)}?$skiptoken=")
        # the client POSTs the same body to the link
        r = invoke(client, emulator, exo, "Get-Mailbox", target=link, extra=prefer)
    assert pages == 3
    assert sorted(seen) == sorted(MAILBOXES)
    assert len(seen) == len(MAILBOXES)


def test_no_paging_without_preference_and_bad_skiptoken(
    client: httpx.Client, emulator: Emulator, exo: Headers
) -> None:
    r = invoke(client, emulator, exo, "Get-Mailbox")
    assert "@odata.nextLink" not in r.json()
    assert "Preference-Applied" not in r.headers
    r = invoke(client, emulator, exo, "Get-Mailbox", target=url(emulator) + "?$skiptoken=garbage")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "BadRequest"
    first = invoke(client, emulator, exo, "Get-Mailbox", extra={"Prefer": "odata.maxpagesize=2"})
    link = first.json()["@odata.nextLink"]
    assert invoke(client, emulator, exo, "Get-Recipient", target=link).status_code == 400
