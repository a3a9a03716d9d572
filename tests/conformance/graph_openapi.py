"""Check Microsoft Graph v1.0 response bodies against Microsoft's OpenAPI description.

The description is ``graph-v1.0-subset.openapi.yaml`` next to this module: an
OpenAPI 3.0.1 cut of Microsoft's published description covering 22 operations
(see ``GRAPH-README.md``). OpenAPI 3.0 schemas are not JSON Schema, so the
component schemas are translated once per loaded file and then validated with
the ``jsonschema`` package (Draft 2020-12) through a ``referencing`` registry.

Translation rules (OpenAPI 3.0 -> JSON Schema 2020-12):

* ``nullable: true`` adds ``null`` to ``type`` (and to ``enum``); on a schema
  without ``type`` it becomes ``if: {type: null}, else: <schema>``.
* A property whose schema is a bare ``$ref`` also accepts ``null`` (switch it off
  with ``GraphSpec.load(..., nullable_refs=False)``). The CSDL declares these
  complex- and enum-typed properties ``Nullable`` (the default), Graph returns
  e.g. ``"certification": null`` and ``"optionalClaims": null`` for a new
  application, but this file's converter settings emit a bare ``$ref`` without
  any nullability marker.
* ``allOf: [{$ref: base}, {own}]`` (OData type inheritance, the only use of
  ``allOf`` in the file) is flattened into one object schema. Left as ``allOf``,
  every branch's ``additionalProperties: {type: object}`` would reject the other
  branches' string and boolean properties.
* Every object component is wrapped in the custom keyword ``x-graph-type``: an
  instance carrying ``@odata.type`` is validated against that (derived) type,
  e.g. ``#microsoft.graph.user`` inside a ``directoryObject`` collection. A type
  that is not the declared type or derived from it is an error.
* ``additionalProperties: {type: object}`` is kept, so undeclared
  non-object properties fail. The exception is an object schema that declares
  no properties at all, for example ``ODataErrors.InnerError`` ("The structure of
  this object is service-specific") or ``plannerAppliedCategories``. There the
  additional properties are the payload, and Graph puts strings in them
  (``innerError.date``, ``request-id``), so any value is accepted.
* OData control information is ignored. See ``_ODATA_ANNOTATION_PATTERN``.
* Extension flag enums (``x-ms-enum-flags: {isFlags: true}``) accept a
  comma-separated list of members. ``format`` is checked for date-time, date,
  time and uuid. ``readOnly``, ``x-ms-*``, descriptions and titles are dropped.
"""

# No "from __future__ import annotations": with string annotations, @dataclass
# needs the module in sys.modules, which breaks loading this file by path
# with importlib.util.spec_from_file_location alone.
import datetime
import functools
import json
import pathlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import jsonschema  # type: ignore[import-untyped]
import yaml
from referencing import Registry
from referencing.jsonschema import DRAFT202012

__all__ = [
    "DEFAULT_SPEC_PATH",
    "ConformanceError",
    "GraphSpec",
    "Operation",
]

DEFAULT_SPEC_PATH: Final = pathlib.Path(__file__).with_name("graph-v1.0-subset.openapi.yaml")

JSONObject = dict[str, Any]

_BASE_URI: Final = "urn:mim-o365:conformance:graph-v1.0-subset"
_SCHEMA_PREFIX: Final = "#/components/schemas/"
_RESPONSE_PREFIX: Final = "#/components/responses/"
_ERROR_SCHEMA: Final = "microsoft.graph.ODataErrors.ODataError"
_ERROR_POINTER: Final = f"/components/schemas/{_ERROR_SCHEMA}"
_ODATA_TYPE: Final = "@odata.type"
_GRAPH_NAMESPACE: Final = "microsoft.graph."
_TYPE_KEYWORD: Final = "x-graph-type"
_HTTP_METHODS: Final = frozenset(
    {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
)
_MAX_REPORTED_ERRORS: Final = 5

# In the OData JSON format, "control information" such as ``@odata.context``,
# ``@odata.nextLink``, ``@odata.count``, ``@odata.type``, ``@odata.etag`` or
# ``tags@odata.type`` is an annotation on the payload, not one of the
# entity's structural or navigation properties. The CSDL, and so the OpenAPI
# description, cannot declare it. Any key starting with or containing
# ``@odata.`` is therefore exempt from ``additionalProperties`` at every
# nesting level. Stripping the keys from the body would have the same effect.
# Instead, each translated object schema gets a ``patternProperties`` entry
# that accepts such keys. This way the body is not copied, the properties a
# schema does declare (``@odata.nextLink`` in collection responses) are still
# checked, and ``@odata.type`` can still select a derived type.
_ODATA_ANNOTATION_PATTERN: Final = r"@odata\."

# Collection-bound functions that Graph also serves without parentheses.
# Such a segment must not be taken for an entity key: GET /applications/delta
# is not "GET /applications/{application-id}".
_UNQUALIFIED_COLLECTION_FUNCTIONS: Final = frozenset({"delta"})

# JSON-Schema keywords that OpenAPI 3.0 shares with JSON Schema and that are
# copied through unchanged. (The file itself only uses pattern, format,
# minimum, maximum and required of these.)
_VERBATIM_KEYWORDS: Final = (
    "pattern",
    "format",
    "minimum",
    "maximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "required",
)


class ConformanceError(AssertionError):
    """A response body does not conform to the OpenAPI description.

    ``problems`` holds ``(json_pointer, message)`` pairs for the reported
    errors. ``str(error)`` names the method, path, status, operation and schema,
    and the first few problems.
    """

    def __init__(
        self,
        method: str | None,
        path: str | None,
        status: int | None,
        summary: str,
        problems: Sequence[tuple[str, str]] = (),
        total: int | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.summary = summary
        self.problems: list[tuple[str, str]] = list(problems)
        self.total = len(self.problems) if total is None else total
        request = " ".join(part for part in (method, path) if part)
        if status is not None:
            request = f"{request} -> {status}" if request else f"status {status}"
        lines = [f"{request}: {summary}" if request else summary]
        for pointer, message in self.problems[:_MAX_REPORTED_ERRORS]:
            lines.append(f"  at {pointer or '(root)'}: {message}")
        if self.total > _MAX_REPORTED_ERRORS:
            lines.append(f"  ... and {self.total - _MAX_REPORTED_ERRORS} more")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Operation:
    """One operation of the subset.

    ``path`` is the template as spelled in the file (namespace-qualified action
    names, alternate keys). ``responses`` maps each response key (``2XX``,
    ``default``, ...) to the JSON pointer of its ``application/json`` schema
    inside the translated document, or to ``None`` when it has no content.
    """

    method: str
    path: str
    operation_id: str
    responses: tuple[tuple[str, str | None], ...]

    def response_key(self, status: int) -> str | None:
        """The response entry that covers ``status``, following OpenAPI rules."""
        keys = {key.upper(): key for key, _ in self.responses}
        for candidate in (str(status), f"{status // 100}XX", "DEFAULT"):
            if candidate in keys:
                return keys[candidate]
        return None

    def schema_pointer(self, key: str) -> str | None:
        return dict(self.responses)[key]


# --------------------------------------------------------------------------- formats


_DATE_TIME_RE: Final = re.compile(
    r"^(\d{4,})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|[+-](\d{2}):(\d{2}))$"
)
_DATE_RE: Final = re.compile(r"^(\d{4,})-(\d{2})-(\d{2})$")
_TIME_RE: Final = re.compile(r"^(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?$")
_UUID_RE: Final = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def _valid_date(year: int, month: int, day: int) -> bool:
    # Years beyond 9999 are allowed by the patterns ([0-9]{4,}). The Gregorian
    # leap-year cycle repeats every 400 years, so check an equivalent year.
    try:
        datetime.date(2000 + year % 400 if year > 9999 else year, month, day)
    except ValueError:
        return False
    return year > 0


def _is_date_time(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    match = _DATE_TIME_RE.match(instance)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    offset_hour, offset_minute = match.group(7), match.group(8)
    if offset_hour is not None and (int(offset_hour) > 23 or int(offset_minute) > 59):
        return False
    return _valid_date(year, month, day) and hour < 24 and minute < 60 and second < 60


def _is_date(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    match = _DATE_RE.match(instance)
    return match is not None and _valid_date(*(int(g) for g in match.groups()))


def _is_time(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    match = _TIME_RE.match(instance)
    if match is None:
        return False
    hour, minute, second = (int(g) for g in match.groups())
    return hour < 24 and minute < 60 and second < 60


def _is_uuid(instance: object) -> bool:
    return not isinstance(instance, str) or _UUID_RE.match(instance) is not None


def _format_checker() -> Any:
    # Built by hand: jsonschema's own date-time and time checkers are skipped
    # silently when the optional rfc3339-validator package is missing.
    checker = jsonschema.FormatChecker(formats=())
    checker.checks("date-time")(_is_date_time)
    checker.checks("date")(_is_date)
    checker.checks("time")(_is_time)
    checker.checks("uuid")(_is_uuid)
    return checker


# --------------------------------------------------------------------------- translation


def _component_name(ref: object) -> str | None:
    if isinstance(ref, str) and ref.startswith(_SCHEMA_PREFIX):
        return ref[len(_SCHEMA_PREFIX) :]
    return None


def _json_pointer(parts: Iterator[object] | Sequence[object]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class _Translator:
    """Translates ``components/schemas`` of one file. The result is memoized."""

    def __init__(self, schemas: Mapping[str, Any], *, nullable_refs: bool) -> None:
        self._raw = schemas
        self._nullable_refs = nullable_refs
        self._merged: dict[str, tuple[JSONObject, list[Any]]] = {}
        # Maps each component to its base type, following allOf[0].$ref.
        self.parent: dict[str, str] = {}
        for name, schema in schemas.items():
            if isinstance(schema, dict):
                for part in schema.get("allOf", ()):
                    base = _component_name(part.get("$ref")) if isinstance(part, dict) else None
                    if base is not None and base in schemas:
                        self.parent[name] = base
                        break

    def descendants(self) -> dict[str, frozenset[str]]:
        result: dict[str, set[str]] = {name: set() for name in self._raw}
        for name in self._raw:
            seen = {name}
            base = self.parent.get(name)
            while base is not None and base not in seen:
                result[base].add(name)
                seen.add(base)
                base = self.parent.get(base)
        return {name: frozenset(names) for name, names in result.items()}

    def is_object(self, name: str) -> bool:
        schema = self._merge_component(name)[0] if "allOf" in self._raw[name] else self._raw[name]
        return schema.get("type") == "object" or "properties" in schema

    def component(self, name: str) -> JSONObject:
        """The translated schema of component ``name``, without the type wrapper."""
        raw = self._raw[name]
        if isinstance(raw, dict) and "allOf" in raw:
            merged, leftovers = self._merge_component(name)
            return self._translate_merged(merged, leftovers)
        translated: JSONObject = self.translate(raw)
        return translated

    def _merge_component(
        self, name: str, seen: frozenset[str] = frozenset()
    ) -> tuple[JSONObject, list[Any]]:
        if name not in self._merged:
            self._merged[name] = self._merge_all_of(self._raw[name], seen | {name})
        return self._merged[name]

    def _merge_all_of(
        self, schema: JSONObject, seen: frozenset[str]
    ) -> tuple[JSONObject, list[Any]]:
        """Flatten ``allOf`` parts that are plain object schemas (or $refs to them).

        Returns the merged OpenAPI schema and the parts that could not be merged.
        """
        properties: dict[str, Any] = {}
        required: list[str] = []
        additional: Any = None
        leftovers: list[Any] = []
        mergeable = {"type", "properties", "required", "additionalProperties", "nullable"}
        mergeable |= {"title", "description"}
        for part in schema["allOf"]:
            base = _component_name(part.get("$ref")) if isinstance(part, dict) else None
            if base is not None and base in self._raw and base not in seen:
                base_schema = self._raw[base]
                if "allOf" in base_schema:
                    part, nested = self._merge_component(base, seen)
                    leftovers.extend(nested)
                else:
                    part = base_schema
            if not isinstance(part, dict) or part.get("type", "object") != "object":
                leftovers.append(part)
                continue
            if any(not (k in mergeable or k.startswith("x-")) for k in part):
                leftovers.append(part)
                continue
            properties.update(part.get("properties", {}))
            required.extend(r for r in part.get("required", ()) if r not in required)
            if "additionalProperties" in part:
                additional = part["additionalProperties"]
        merged: JSONObject = {"type": "object", "properties": properties}
        if required:
            merged["required"] = required
        if additional is not None:
            merged["additionalProperties"] = additional
        if schema.get("nullable") is True:
            merged["nullable"] = True
        return merged, leftovers

    def _translate_merged(self, merged: JSONObject, leftovers: list[Any]) -> JSONObject:
        out: JSONObject = self.translate(merged)
        if leftovers:
            out["allOf"] = [self.translate(part) for part in leftovers]
        return out

    def translate(self, node: Any, *, is_property: bool = False) -> Any:
        if not isinstance(node, dict):
            return node
        nullable = node.get("nullable") is True
        if "$ref" in node:
            # OpenAPI 3.0 ignores siblings of $ref. All refs point into this file.
            ref: JSONObject = {"$ref": node["$ref"]}
            if nullable or (is_property and self._nullable_refs):
                return {"if": {"type": "null"}, "else": ref}
            return ref
        if "allOf" in node:
            merged, leftovers = self._merge_all_of(node, frozenset())
            return self._translate_merged(merged, leftovers)

        out: JSONObject = {}
        declared_type = node.get("type")
        if isinstance(declared_type, str):
            out["type"] = [declared_type, "null"] if nullable else declared_type
        if "enum" in node:
            members = list(node["enum"])
            flags = node.get("x-ms-enum-flags")
            if isinstance(flags, dict) and flags.get("isFlags") is True:
                # Flag enums serialize as a comma-separated member list.
                member = "(?:" + "|".join(re.escape(str(m)) for m in members) + ")"
                out["pattern"] = f"^{member}(?:,{member})*$"
            else:
                if nullable and None not in members:
                    members.append(None)
                out["enum"] = members
        for keyword in _VERBATIM_KEYWORDS:
            if keyword in node and keyword not in out:
                out[keyword] = node[keyword]
        # OpenAPI 3.0 spells exclusive bounds as booleans.
        for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if node.get(exclusive) is True and bound in out:
                out[exclusive] = out.pop(bound)
        if "properties" in node:
            out["properties"] = {
                name: self.translate(schema, is_property=True)
                for name, schema in node["properties"].items()
            }
        if "items" in node:
            out["items"] = self.translate(node["items"])
        if "additionalProperties" in node:
            additional = node["additionalProperties"]
            if not node.get("properties") and additional == {"type": "object"}:
                # A property-less "open" object: its additional properties are
                # its content (see module docstring). Accept any values.
                pass
            else:
                out["additionalProperties"] = self.translate(additional)
                out["patternProperties"] = {_ODATA_ANNOTATION_PATTERN: True}
        for combinator in ("anyOf", "oneOf"):
            if combinator in node:
                out[combinator] = [self.translate(part) for part in node[combinator]]
        if "not" in node:
            out["not"] = self.translate(node["not"])
        if nullable and not isinstance(declared_type, str):
            return {"if": {"type": "null"}, "else": out}
        return out


# --------------------------------------------------------------------------- path matching


_Matcher = tuple[str, Any]  # ("literal", (names...)) | ("param", name) | ("regex", compiled)
_PARAM_RE: Final = re.compile(r"\{([^{}]+)\}")
# "name(key='value')" or "name(key=value)": an alternate-key segment.
_KEY_SEGMENT_RE: Final = re.compile(
    r"^([^()]+)\(\s*[A-Za-z_][A-Za-z0-9_]*\s*=\s*('(?:[^']|'')*'|[^()']*)\s*\)$"
)


def _compile_segment(segment: str) -> _Matcher:
    whole = _PARAM_RE.fullmatch(segment)
    if whole is not None:
        return ("param", whole.group(1))
    if _PARAM_RE.search(segment) is not None:
        pattern = ""
        position = 0
        for match in _PARAM_RE.finditer(segment):
            pattern += re.escape(segment[position : match.start()])
            quoted = segment[match.start() - 1 : match.start()] == "'"
            pattern += "(?:[^']|'')*" if quoted else "[^/()']+"
            position = match.end()
        pattern += re.escape(segment[position:])
        return ("regex", re.compile(pattern, re.IGNORECASE))
    names = {segment.casefold()}
    if segment.startswith(_GRAPH_NAMESPACE):
        # Graph serves bound actions and functions with and without the
        # namespace; the subset spells them qualified (see GRAPH-README.md).
        names.add(segment[len(_GRAPH_NAMESPACE) :].casefold())
    return ("literal", frozenset(names))


def _can_be_key(segment: str) -> bool:
    return bool(segment) and not (
        segment.startswith("$")
        or "(" in segment
        or ")" in segment
        or segment.casefold().startswith(_GRAPH_NAMESPACE)
        or segment.casefold() in _UNQUALIFIED_COLLECTION_FUNCTIONS
    )


def _match(matchers: Sequence[_Matcher], segments: Sequence[str]) -> bool:
    if len(matchers) != len(segments):
        return False
    for (kind, value), segment in zip(matchers, segments, strict=True):
        if kind == "literal":
            if segment.casefold() not in value:
                return False
        elif kind == "param":
            if not _can_be_key(segment):
                return False
        elif value.fullmatch(segment) is None:
            return False
    return True


def _split_path(path: str) -> list[str]:
    """Split a request path into percent-decoded segments, without ``/v1.0``."""
    if "://" in path:
        path = urlsplit(path).path
    path = path.split("?", 1)[0].split("#", 1)[0]
    # Decode per segment, so that an encoded "/" (%2F) stays inside its key.
    segments = [unquote(s) for s in path.split("/") if s != ""]
    if segments and segments[0] == "v1.0":
        segments = segments[1:]
    return segments


def _expand_alternate_keys(segments: Sequence[str]) -> list[str] | None:
    """Rewrite ``applications(appId='x')`` into ``applications``, ``x``."""
    expanded: list[str] = []
    changed = False
    for segment in segments:
        match = _KEY_SEGMENT_RE.match(segment)
        if match is None:
            expanded.append(segment)
            continue
        value = match.group(2)
        if value.startswith("'"):
            value = value[1:-1].replace("''", "'")
        expanded.extend((match.group(1), value))
        changed = True
    return expanded if changed else None


# --------------------------------------------------------------------------- the spec


class GraphSpec:
    """The parsed subset, its translated schemas and cached validators."""

    def __init__(self, document: Mapping[str, Any], *, nullable_refs: bool = True) -> None:
        components = document.get("components", {})
        raw_schemas: Mapping[str, Any] = components.get("schemas", {})
        raw_responses: Mapping[str, Any] = components.get("responses", {})
        translator = _Translator(raw_schemas, nullable_refs=nullable_refs)

        self.nullable_refs = nullable_refs
        self._descendants = translator.descendants()
        self._flat: dict[str, JSONObject] = {}
        schemas: JSONObject = {}
        for name in raw_schemas:
            if translator.is_object(name):
                self._flat[name] = translator.component(name)
                schemas[name] = {_TYPE_KEYWORD: name}
            else:
                schemas[name] = translator.component(name)
        inline: JSONObject = {}
        self._document: JSONObject = {"components": {"schemas": schemas}, "x-inline": inline}

        def schema_pointer(response: Any, label: str) -> str | None:
            if isinstance(response, dict) and isinstance(response.get("$ref"), str):
                ref = response["$ref"]
                if ref.startswith(_RESPONSE_PREFIX):
                    response = raw_responses.get(ref[len(_RESPONSE_PREFIX) :])
            content = response.get("content") if isinstance(response, dict) else None
            if not content:
                return None
            media = content.get("application/json")
            if media is None:
                media = next((m for t, m in content.items() if "json" in t), None)
            if not isinstance(media, dict) or "schema" not in media:
                return None
            name = _component_name(media["schema"].get("$ref"))
            if name is not None and set(media["schema"]) == {"$ref"}:
                return f"/components/schemas/{name}"
            inline[label] = translator.translate(media["schema"])
            return _json_pointer(["x-inline", label])

        operations: list[Operation] = []
        self._matchers: list[tuple[list[_Matcher], Operation]] = []
        for template, item in document.get("paths", {}).items():
            for method, raw_op in item.items():
                if method not in _HTTP_METHODS:
                    continue
                operation_id = str(raw_op.get("operationId", f"{method} {template}"))
                responses = tuple(
                    (str(key), schema_pointer(response, f"{operation_id} {key}"))
                    for key, response in raw_op.get("responses", {}).items()
                )
                operation = Operation(method.upper(), template, operation_id, responses)
                operations.append(operation)
                matchers = [_compile_segment(s) for s in template.split("/") if s]
                self._matchers.append((matchers, operation))
        self.operations: tuple[Operation, ...] = tuple(operations)

        self._registry: Registry[Any] = Registry().with_resource(
            _BASE_URI, DRAFT202012.create_resource(self._document)
        )
        self._validator_class = jsonschema.validators.extend(
            jsonschema.Draft202012Validator, validators={_TYPE_KEYWORD: self._graph_type_keyword}
        )
        self._format_checker = _format_checker()
        self._validators: dict[str, Any] = {}

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, path: pathlib.Path | None = None, *, nullable_refs: bool = True) -> "GraphSpec":
        """Load the OpenAPI file (default: the one next to this module).

        The result is cached per resolved path and options: parsing takes a while.
        """
        return _load_cached(pathlib.Path(path or DEFAULT_SPEC_PATH).resolve(), nullable_refs)

    # ------------------------------------------------------------------ operations

    def operation_for(self, method: str, path: str) -> Operation | None:
        """The subset operation serving ``method path`` (path after ``/v1.0``), or None."""
        method = method.upper()
        segments = _split_path(path)
        found = self._find(method, segments)
        if found is None:
            # The subset declares alternate keys only where Graph documents a
            # separate GET (/applications(appId='{appId}')). Graph also accepts
            # the alternate key in front of actions and navigation, such as
            # /applications(appId='x')/addPassword. That addresses the same
            # entity and returns the same payload, so map it to the id form
            # (/applications/{application-id}/microsoft.graph.addPassword).
            expanded = _expand_alternate_keys(segments)
            if expanded is not None:
                found = self._find(method, expanded)
        return found

    def _find(self, method: str, segments: Sequence[str]) -> Operation | None:
        best: tuple[int, Operation] | None = None
        for matchers, operation in self._matchers:
            if operation.method == method and _match(matchers, segments):
                literal_count = sum(kind != "param" for kind, _ in matchers)
                if best is None or literal_count > best[0]:
                    best = (literal_count, operation)
        return None if best is None else best[1]

    # ------------------------------------------------------------------ validation

    def validate_response(self, method: str, path: str, status: int, body: object | None) -> bool:
        """Validate one response body.

        ``body`` is the decoded JSON, or ``None``/empty for no body (``bytes``
        are decoded as JSON text). Returns ``True`` when the operation is in the
        subset and the body conforms, and ``False`` when the operation is not in
        the subset. In that case an error body (status >= 400) is still checked
        against the OData error schema, which Graph uses for every operation.
        Raises ``ConformanceError`` when the body does not conform.
        """
        method = method.upper()
        body = _decode(body)
        operation = self.operation_for(method, path)
        if operation is None:
            if status >= 400:
                self._check(method, path, status, _ERROR_POINTER, body, "no subset operation")
            return False
        key = operation.response_key(status)
        if key is None:
            raise ConformanceError(
                method,
                path,
                status,
                f"status {status} is not described for operation {operation.operation_id} "
                f"(responses: {', '.join(k for k, _ in operation.responses)})",
            )
        pointer = operation.schema_pointer(key)
        if status in (204, 205, 304) or (200 <= status < 300 and pointer is None):
            # 204 No Content cannot carry a body whatever the 2XX schema says:
            # the range mixes PATCH's 204 with the 200 of Prefer: return=representation.
            if not _is_empty(body):
                raise ConformanceError(
                    method,
                    path,
                    status,
                    f"{operation.operation_id} response {key} has no content, "
                    f"but the body is not empty: {_short(body)}",
                )
            return True
        if pointer is None:
            if not _is_empty(body):
                raise ConformanceError(
                    method,
                    path,
                    status,
                    f"{operation.operation_id} response {key} declares no content, but got a body",
                )
            return True
        self._check(method, path, status, pointer, body, operation.operation_id)
        return True

    def validate_error(
        self,
        body: object | None,
        *,
        method: str | None = None,
        path: str | None = None,
        status: int | None = None,
    ) -> None:
        """Validate an error body against ``microsoft.graph.ODataErrors.ODataError``.

        Use it for error responses to requests outside the subset; the optional
        request details only label the ``ConformanceError``.
        """
        method = method.upper() if method else None
        self._check(method, path, status, _ERROR_POINTER, _decode(body), "OData error")

    def validate_schema(self, schema_name: str, instance: object) -> None:
        """Validate ``instance`` against one component schema, e.g. ``microsoft.graph.user``."""
        self._check(None, None, None, f"/components/schemas/{schema_name}", instance, "component")

    def schema_errors(self, pointer: str, instance: object) -> list[tuple[str, str]]:
        """Every ``(json_pointer, message)`` problem of ``instance``.

        ``pointer`` locates the schema in the translated document, for example
        ``/components/schemas/microsoft.graph.user``.
        """
        errors = sorted(
            self._validator(pointer).iter_errors(instance),
            key=lambda e: (
                [str(p) for p in e.absolute_path],
                [str(p) for p in e.absolute_schema_path],
            ),
        )
        return [(_json_pointer(error.absolute_path), self._describe(error)) for error in errors]

    def translated_schema(self, name: str) -> JSONObject:
        """The JSON Schema used for component ``name`` (flattened; for debugging)."""
        flat = self._flat.get(name)
        return flat if flat is not None else dict(self._document["components"]["schemas"][name])

    def _check(
        self,
        method: str | None,
        path: str | None,
        status: int | None,
        pointer: str,
        body: object,
        label: str,
    ) -> None:
        schema = _schema_label(pointer)
        if _is_empty(body):
            raise ConformanceError(
                method, path, status, f"{label}: expected a JSON body ({schema})"
            )
        problems = self.schema_errors(pointer, body)
        if problems:
            raise ConformanceError(
                method,
                path,
                status,
                f"{label}: body does not conform to {schema} ({len(problems)} error(s))",
                problems,
            )

    def _validator(self, pointer: str) -> Any:
        validator = self._validators.get(pointer)
        if validator is None:
            validator = self._validator_class(
                {"$ref": f"{_BASE_URI}#{pointer}"},
                registry=self._registry,
                format_checker=self._format_checker,
            )
            self._validators[pointer] = validator
        return validator

    def _describe(self, error: Any) -> str:
        schema_path = [str(p) for p in error.absolute_schema_path]
        if error.validator == "type" and schema_path[-2:] == ["additionalProperties", "type"]:
            name = error.absolute_path[-1] if error.absolute_path else "?"
            message = (
                f"undeclared property {name!r} = {_short(error.instance)}: the subset schema "
                "does not declare it and its additionalProperties only admits objects "
                "(a property newer than the subset? see GRAPH-README.md)"
            )
            # [..., "x-graph-type", <type>, "additionalProperties", "type"]
            if len(schema_path) >= 4 and schema_path[-4] == _TYPE_KEYWORD:
                declared = schema_path[-3]
                if self._descendants.get(declared):
                    message += (
                        f"; it was checked as {declared}, which has derived types: "
                        f"does the object lack {_ODATA_TYPE}?"
                    )
            return message
        return f"{error.message} [{error.validator}]"

    def _graph_type_keyword(
        self, validator: Any, name: str, instance: Any, schema: Any
    ) -> Iterator[Any]:
        """Validate against ``name`` or against the derived type named by ``@odata.type``."""
        target = name
        if isinstance(instance, dict) and _ODATA_TYPE in instance:
            declared = instance[_ODATA_TYPE]
            if not isinstance(declared, str):
                message = f"{_ODATA_TYPE} must be a string, not {declared!r}"
                yield jsonschema.ValidationError(message, path=[_ODATA_TYPE])
                return
            cast = declared[1:] if declared.startswith("#") else declared
            if cast != name:
                if cast not in self._flat:
                    message = (
                        f"{_ODATA_TYPE} {declared!r} names no object type of the subset "
                        f"(expected {name} or a type derived from it)"
                    )
                    yield jsonschema.ValidationError(message, path=[_ODATA_TYPE])
                    return
                if cast not in self._descendants.get(name, frozenset()):
                    message = f"{_ODATA_TYPE} {declared!r} is neither {name} nor derived from it"
                    yield jsonschema.ValidationError(message, path=[_ODATA_TYPE])
                    return
                target = cast
        yield from validator.descend(instance, self._flat[target], schema_path=target)


@functools.cache
def _load_cached(path: pathlib.Path, nullable_refs: bool) -> "GraphSpec":
    with path.open("rb") as handle:
        if hasattr(yaml, "CSafeLoader"):  # libyaml: about ten times faster
            document = yaml.load(handle, Loader=yaml.CSafeLoader)
        else:
            document = yaml.load(handle, Loader=yaml.SafeLoader)
    if not isinstance(document, dict):
        raise ValueError(f"{path}: not an OpenAPI document")
    return GraphSpec(document, nullable_refs=nullable_refs)


# --------------------------------------------------------------------------- helpers


def _decode(body: object | None) -> object | None:
    if isinstance(body, bytes | bytearray):
        text = bytes(body).decode("utf-8").strip()
        return json.loads(text) if text else None
    return body


def _is_empty(body: object | None) -> bool:
    return body is None or body == "" or body == b""


def _short(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _schema_label(pointer: str) -> str:
    prefix = "/components/schemas/"
    return pointer[len(prefix) :] if pointer.startswith(prefix) else pointer
