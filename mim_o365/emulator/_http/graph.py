"""Microsoft Graph v1.0: the directory operations mim-o365 uses, with OData errors throughout."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx

from mim_o365.emulator._directory import Caller
from mim_o365.emulator._errors import EmulatorError, bad_request, denied
from mim_o365.emulator._http import _graph_json as gj
from mim_o365.emulator._http import _odata
from mim_o365.emulator._http._common import JSON, base_url, json_response, match, read_json, route
from mim_o365.emulator._tokens import InvalidToken

if TYPE_CHECKING:
    from mim_o365.emulator._emulator import Emulator
    from mim_o365.emulator._models import ServicePrincipal

ODATA_JSON = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"

_APP = r"(?:/(?P<id>[^/()]+)|\(appId='(?P<appid>[^']*)'\))"
_SP = r"(?:/(?P<id>[^/()]+)|\(appId='(?P<appid>[^']*)'\))"
_NS = r"(?:microsoft\.graph\.)?"

ROUTES = [
    route("GET POST", r"/applications", "applications"),
    route("GET PATCH DELETE", f"/applications{_APP}", "application"),
    route("POST", f"/applications{_APP}/{_NS}addPassword", "add_password"),
    route("POST", f"/applications{_APP}/{_NS}removePassword", "remove_password"),
    route("GET POST", r"/servicePrincipals", "service_principals"),
    route("GET DELETE", f"/servicePrincipals{_SP}", "service_principal"),
    route(
        "GET POST",
        f"/servicePrincipals{_SP}/(?P<side>appRoleAssignedTo|appRoleAssignments)",
        "assignments",
    ),
    route(
        "DELETE",
        f"/servicePrincipals{_SP}/(?P<side>appRoleAssignedTo|appRoleAssignments)/(?P<aid>[^/]+)",
        "assignment",
    ),
    route("GET", r"/organization", "organization"),
    route("GET", r"/users/(?P<uid>[^/]+)", "user"),
    route("GET POST", r"/groups", "groups"),
    route("GET", r"/groups/(?P<gid>[^/]+)", "group"),
    route("GET", r"/groups/(?P<gid>[^/]+)/members", "members"),
]

READ_APPS = (
    "Application.Read.All",
    "Application.ReadWrite.All",
    "Application.ReadWrite.OwnedBy",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
)
READ_USERS = (
    "User.Read.All",
    "User.ReadBasic.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
)
READ_ORG = (
    "Organization.Read.All",
    "Organization.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
    "User.Read",
)
READ_GROUPS = (
    "Group.Read.All",
    "Group.ReadWrite.All",
    "GroupMember.Read.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
)


def odata_error(
    request: httpx.Request, err: EmulatorError, request_id: str, date: str
) -> httpx.Response:
    """Graph's error envelope."""
    error: JSON = {"code": err.code, "message": err.message}
    if err.details:
        error["details"] = err.details
    error["innerError"] = {
        "date": date,
        "request-id": request_id,
        "client-request-id": request.headers.get("client-request-id", request_id),
    }
    return json_response(err.status, {"error": error}, err.headers, content_type=ODATA_JSON)


class Graph:
    """The Graph surface of an :class:`Emulator`."""

    def __init__(self, emulator: Emulator) -> None:
        self.em = emulator
        self.dir = emulator.directory

    # --- entry --------------------------------------------------------------------------------

    def handle(self, request: httpx.Request, path: str) -> httpx.Response:
        """Serve ``path`` (after ``/v1.0``)."""
        request_id = self.em.ids.guid()
        date = self.em.clock.now().strftime("%Y-%m-%dT%H:%M:%S")
        headers = {
            "request-id": request_id,
            "client-request-id": request.headers.get("client-request-id", request_id),
            "x-ms-ags-diagnostic": json.dumps(
                {
                    "ServerInfo": {
                        "DataCenter": "Emulator",
                        "Slice": "E",
                        "Ring": "0",
                        "ScaleUnit": "000",
                        "RoleInstance": "emulator",
                    }
                }
            ),
            "OData-Version": "4.0",
        }
        try:
            found = match(ROUTES, request.method, path)
            if found is None:
                segment = path.strip("/").split("/")[0].split("(")[0] or "/"
                raise EmulatorError(
                    400, "BadRequest", f"Resource not found for the segment '{segment}'."
                )
            if found == "method":
                raise EmulatorError(
                    405,
                    "Request_BadRequest",
                    "Specified HTTP method is not allowed for the request target.",
                )
            assert not isinstance(found, str)  # noqa: S101 - narrowed above
            r, params = found
            caller = self._authenticate(request)
            handler: Callable[..., httpx.Response] = getattr(self, f"_{r.handler}")
            with self.dir.lock:
                response = handler(request, caller, **params)
        except EmulatorError as err:
            response = odata_error(request, err, request_id, date)
        response.headers.update(headers)
        self.em.changed(request.method)
        return response

    def _authenticate(self, request: httpx.Request) -> Caller:
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            raise EmulatorError(401, "InvalidAuthenticationToken", "Access token is empty.")
        graph_sp = self.dir.sp_by_name("https://graph.microsoft.com")
        audiences = (
            tuple(graph_sp.service_principal_names)
            if graph_sp
            else ("https://graph.microsoft.com",)
        )
        try:
            claims = self.em.tokens.validate(
                auth[7:].strip(), audiences=audiences, now=self.em.clock.now()
            )
        except InvalidToken as exc:
            message = exc.reason
            if exc.kind == "invalid_resource":
                message = "Access token validation failure. Invalid audience."
            raise EmulatorError(401, "InvalidAuthenticationToken", message) from None
        if claims.get("tid") != self.dir.state.tenant.id:
            raise EmulatorError(
                401, "InvalidAuthenticationToken", "Access token validation failure."
            )
        if claims.get("idtyp") == "user":
            client_sp = self.dir.sp_by_app_id(str(claims.get("appid", "")))
            return Caller(
                app_id=str(claims.get("appid")),
                sp_id=client_sp.id if client_sp else None,
                scopes=frozenset(str(claims.get("scp", "")).split()),
                user_id=str(claims["oid"]),
            )
        return Caller(
            app_id=str(claims.get("appid")),
            sp_id=str(claims.get("oid")),
            roles=frozenset(claims.get("roles", [])),
        )

    # --- output helpers -----------------------------------------------------------------------

    def _context(self, request: httpx.Request, what: str) -> str:
        return f"{base_url(request)}/v1.0/$metadata#{what}"

    def _entity(
        self,
        request: httpx.Request,
        what: str,
        body: JSON,
        status: int = 200,
        extra_headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        return json_response(
            status,
            {"@odata.context": self._context(request, what), **body},
            extra_headers,
            content_type=ODATA_JSON,
        )

    def _collection(
        self,
        request: httpx.Request,
        what: str,
        items: Iterable[JSON],
        *,
        filterable: Mapping[str, str],
        entity: str,
        type_name: str,
        selectable: frozenset[str],
    ) -> httpx.Response:
        params = request.url.params
        advanced = request.headers.get("consistencylevel", "").lower() == "eventual"
        unknown = {k for k in params if k.startswith("$")} - {
            "$filter",
            "$select",
            "$top",
            "$skiptoken",
            "$count",
            "$search",
            "$orderby",
            "$expand",
        }
        if unknown:
            raise bad_request(f"Query option '{sorted(unknown)[0]}' is not allowed.")
        if "$expand" in params:
            raise _odata.unsupported()
        if "$search" in params and not advanced:
            raise _odata.unsupported(
                "Request with $search query parameter only works through MSGraph with a special "
                "request header: 'ConsistencyLevel: eventual'"
            )
        top = _odata.parse_top(params.get("$top"))
        offset = _odata.decode_skiptoken(params.get("$skiptoken"))
        predicate = None
        if "$filter" in params:
            predicate = _odata.FilterParser(
                params["$filter"],
                filterable,
                entity,
                advanced=advanced and params.get("$count", "").lower() == "true",
            ).parse()
        rows = [i for i in items if predicate is None or predicate(i)]
        if "$search" in params:
            term = params["$search"].strip('"')
            prop, _, word = term.partition(":")
            rows = [i for i in rows if word.lower() in str(i.get(prop, "")).lower()]
        if "$orderby" in params:
            field, _, direction = params["$orderby"].partition(" ")
            if field != "displayName":
                raise _odata.unsupported()
            rows.sort(
                key=lambda i: str(i.get(field) or "").lower(), reverse=direction.lower() == "desc"
            )
        fields = _odata.parse_select(params.get("$select"), selectable, type_name)
        page = rows[offset : offset + top]
        context = what if fields is None else f"{what}({','.join(fields)})"
        body: JSON = {"@odata.context": self._context(request, context)}
        if advanced and params.get("$count", "").lower() == "true":
            body["@odata.count"] = len(rows)
        if offset + top < len(rows):
            query = {k: v for k, v in params.items() if k != "$skiptoken"}
            query["$skiptoken"] = _odata.encode_skiptoken(offset + top)
            body["@odata.nextLink"] = f"{base_url(request)}{request.url.path}?{urlencode(query)}"
        body["value"] = [_odata.select(i, fields) for i in page]
        return json_response(200, body, content_type=ODATA_JSON)

    @staticmethod
    def _body(request: httpx.Request) -> dict[str, Any]:
        body, problem = read_json(request)
        if problem is not None:
            raise bad_request(problem)
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.")
        return body

    def _select_one(self, request: httpx.Request, body: JSON, type_name: str) -> tuple[JSON, str]:
        fields = _odata.parse_select(request.url.params.get("$select"), set(body), type_name)
        return _odata.select(body, fields), "" if fields is None else f"({','.join(fields)})"

    @staticmethod
    def _need(caller: Caller, permissions: tuple[str, ...]) -> None:
        if not caller.has_any(*permissions):
            raise denied()

    # --- applications -------------------------------------------------------------------------

    def _app(self, id: str | None = None, appid: str | None = None) -> Any:
        return (
            self.dir.get_application(appid, by_app_id=True)
            if appid is not None
            else self.dir.get_application(id or "")
        )

    def _applications(self, request: httpx.Request, caller: Caller) -> httpx.Response:
        tenant = self.dir.state.tenant
        if request.method == "POST":
            app = self.dir.create_application(caller, self._body(request))
            return self._entity(
                request,
                "applications/$entity",
                gj.application_json(app, tenant),
                201,
                {
                    "Location": f"{base_url(request)}/v1.0/directoryObjects/{app.id}/Microsoft.DirectoryServices.Application"
                },
            )
        self._need(caller, READ_APPS)
        return self._collection(
            request,
            "applications",
            (gj.application_json(a, tenant) for a in self.dir.applications()),
            filterable=gj.APPLICATION_FILTERABLE,
            entity="Application",
            type_name="microsoft.graph.application",
            selectable=gj.APPLICATION_PROPERTIES,
        )

    def _application(self, request: httpx.Request, caller: Caller, **key: str) -> httpx.Response:
        if request.method == "GET":
            self._need(caller, READ_APPS)
        app = self._app(**key)
        if request.method == "PATCH":
            self.dir.update_application(caller, app, self._body(request))
            return json_response(204, None)
        if request.method == "DELETE":
            self.dir.delete_application(caller, app)
            return json_response(204, None)
        body, ctx = self._select_one(
            request, gj.application_json(app, self.dir.state.tenant), "microsoft.graph.application"
        )
        return self._entity(request, f"applications{ctx}/$entity", body)

    def _add_password(self, request: httpx.Request, caller: Caller, **key: str) -> httpx.Response:
        app = self._app(**key)
        body = self._body(request) if request.content.strip() else {}
        cred, text = self.dir.add_password(caller, app, body)
        return self._entity(
            request, "microsoft.graph.passwordCredential", gj.password_json(cred, text)
        )

    def _remove_password(
        self, request: httpx.Request, caller: Caller, **key: str
    ) -> httpx.Response:
        app = self._app(**key)
        self.dir.remove_password(caller, app, self._body(request))
        return json_response(204, None)

    # --- service principals -------------------------------------------------------------------

    def _sp(self, id: str | None = None, appid: str | None = None, **_: str) -> ServicePrincipal:
        if appid is not None:
            return self.dir.get_service_principal(appid, by_app_id=True)
        return self.dir.get_service_principal(id or "")

    def _service_principals(self, request: httpx.Request, caller: Caller) -> httpx.Response:
        if request.method == "POST":
            sp = self.dir.create_service_principal(caller, self._body(request))
            return self._entity(
                request, "servicePrincipals/$entity", gj.service_principal_json(sp), 201
            )
        self._need(caller, READ_APPS)
        return self._collection(
            request,
            "servicePrincipals",
            (gj.service_principal_json(s) for s in self.dir.service_principals()),
            filterable=gj.SERVICE_PRINCIPAL_FILTERABLE,
            entity="ServicePrincipal",
            type_name="microsoft.graph.servicePrincipal",
            selectable=gj.SERVICE_PRINCIPAL_PROPERTIES,
        )

    def _service_principal(
        self, request: httpx.Request, caller: Caller, **key: str
    ) -> httpx.Response:
        if request.method == "GET":
            self._need(caller, READ_APPS)
        sp = self._sp(**key)
        if request.method == "DELETE":
            self.dir.delete_service_principal(caller, sp)
            return json_response(204, None)
        body, ctx = self._select_one(
            request, gj.service_principal_json(sp), "microsoft.graph.servicePrincipal"
        )
        return self._entity(request, f"servicePrincipals{ctx}/$entity", body)

    def _assignments(
        self, request: httpx.Request, caller: Caller, side: str, **key: str
    ) -> httpx.Response:
        sp = self._sp(**key)
        resource_side = side == "appRoleAssignedTo"
        what = f"servicePrincipals('{sp.id}')/{side}"
        if request.method == "POST":
            a = self.dir.assign_app_role(
                caller, self._body(request), path_sp=sp, resource_side=resource_side
            )
            return self._entity(request, f"{what}/$entity", gj.assignment_json(a), 201)
        self._need(caller, READ_APPS)
        found = (
            self.dir.assignments(resource_id=sp.id)
            if resource_side
            else self.dir.assignments(principal_id=sp.id)
        )
        return self._collection(
            request,
            what,
            (gj.assignment_json(a) for a in found),
            filterable=gj.ASSIGNMENT_FILTERABLE,
            entity="AppRoleAssignment",
            type_name="microsoft.graph.appRoleAssignment",
            selectable=gj.ASSIGNMENT_PROPERTIES,
        )

    def _assignment(
        self, request: httpx.Request, caller: Caller, side: str, aid: str, **key: str
    ) -> httpx.Response:
        sp = self._sp(**key)
        self.dir.delete_assignment(caller, sp, aid)
        return json_response(204, None)

    # --- organization, users, groups ----------------------------------------------------------

    def _organization(self, request: httpx.Request, caller: Caller) -> httpx.Response:
        self._need(caller, READ_ORG)
        return self._collection(
            request,
            "organization",
            [gj.organization_json(self.dir.state.tenant)],
            filterable={"id": "scalar"},
            entity="Organization",
            type_name="microsoft.graph.organization",
            selectable=gj.ORGANIZATION_PROPERTIES,
        )

    def _user(self, request: httpx.Request, caller: Caller, uid: str) -> httpx.Response:
        user = self.dir.get_user(uid)
        if not caller.has_any(*READ_USERS) and not (caller.delegated and caller.user_id == user.id):
            raise denied()
        fields = _odata.parse_select(
            request.url.params.get("$select"), gj.USER_SELECTABLE, "microsoft.graph.user"
        )
        body = _odata.select(gj.user_select_json(user) if fields else gj.user_json(user), fields)
        ctx = "" if fields is None else f"({','.join(fields)})"
        return self._entity(request, f"users{ctx}/$entity", body)

    def _groups(self, request: httpx.Request, caller: Caller) -> httpx.Response:
        if request.method == "POST":
            group = self.dir.create_group(caller, self._body(request))
            return self._entity(request, "groups/$entity", gj.group_json(group), 201)
        self._need(caller, READ_GROUPS)
        return self._collection(
            request,
            "groups",
            (gj.group_json(g) for g in self.dir.state.groups.values()),
            filterable=gj.GROUP_FILTERABLE,
            entity="Group",
            type_name="microsoft.graph.group",
            selectable=gj.GROUP_PROPERTIES,
        )

    def _group(self, request: httpx.Request, caller: Caller, gid: str) -> httpx.Response:
        self._need(caller, READ_GROUPS)
        return self._entity(request, "groups/$entity", gj.group_json(self.dir.get_group(gid)))

    def _members(self, request: httpx.Request, caller: Caller, gid: str) -> httpx.Response:
        self._need(caller, READ_GROUPS)
        group = self.dir.get_group(gid)
        members = []
        for member_id in group.members:
            try:
                user = self.dir.get_user(member_id)
            except EmulatorError:
                continue
            members.append({"@odata.type": "#microsoft.graph.user", **gj.user_json(user)})
        return self._collection(
            request,
            "directoryObjects",
            members,
            filterable={"id": "scalar"},
            entity="DirectoryObject",
            type_name="microsoft.graph.directoryObject",
            selectable=frozenset(gj.USER_SELECTABLE),
        )


__all__ = ["Graph"]
