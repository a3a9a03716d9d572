"""The OData query options Graph supports on directory collections: ``$filter`` (a subset),
``$select``, ``$top``, ``$skiptoken``, ``$count``, ``$search`` and ``$orderby``.

Filters are evaluated on an entity's JSON, so what a client can filter on is exactly what it reads.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mim_o365.emulator._errors import EmulatorError, bad_request

Predicate = Callable[[Mapping[str, Any]], bool]

MAX_TOP = 999
DEFAULT_PAGE = 100

_TOKEN_RE = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?(?![\w-]))|(?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})|(?P<punct>[(),:/])|(?P<word>[A-Za-z_@][\w.@]*))"
)

ADVANCED = "advanced"


def unsupported(message: str = "Unsupported Query.") -> EmulatorError:
    """Graph's 400 for a query the directory does not support."""
    return EmulatorError(400, "Request_UnsupportedQuery", message)


@dataclass(frozen=True)
class Tok:
    kind: str
    text: str


def _tokenize(text: str) -> list[Tok]:
    pos, out = 0, []
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN_RE.match(text, pos)
        if m is None or m.end() == pos:
            raise bad_request(f"Invalid filter clause: syntax error at position {pos} in '{text}'.")
        kind = m.lastgroup or "word"
        out.append(Tok(kind, m.group(kind)))
        pos = m.end()
    return out


class FilterParser:
    """Recursive descent over the part of OData ``$filter`` that directory objects accept.

    Args:
        text: the ``$filter`` value.
        filterable: property name -> ``"scalar"`` or ``"collection"`` (for ``any`` lambdas).
        entity: the entity name, for error messages.
        advanced: whether advanced queries are enabled (``ConsistencyLevel: eventual`` and
            ``$count=true``); ``ne``, ``not`` and ``endswith`` need them.
    """

    def __init__(
        self, text: str, filterable: Mapping[str, str], entity: str, *, advanced: bool
    ) -> None:
        self.toks = _tokenize(text)
        self.i = 0
        self.filterable = filterable
        self.entity = entity
        self.advanced = advanced

    def parse(self) -> Predicate:
        pred = self._or()
        if self.i != len(self.toks):
            raise bad_request(f"Invalid filter clause: unexpected '{self.toks[self.i].text}'.")
        return pred

    # grammar -------------------------------------------------------------------------------

    def _peek(self, text: str | None = None) -> Tok | None:
        if self.i >= len(self.toks):
            return None
        tok = self.toks[self.i]
        if text is not None and tok.text.lower() != text:
            return None
        return tok

    def _take(self, text: str | None = None) -> Tok:
        tok = self._peek(text)
        if tok is None:
            raise bad_request("Invalid filter clause: incomplete expression.")
        self.i += 1
        return tok

    def _or(self) -> Predicate:
        parts = [self._and()]
        while self._peek("or"):
            self.i += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda e: any(p(e) for p in parts))

    def _and(self) -> Predicate:
        parts = [self._unary()]
        while self._peek("and"):
            self.i += 1
            parts.append(self._unary())
        return parts[0] if len(parts) == 1 else (lambda e: all(p(e) for p in parts))

    def _unary(self) -> Predicate:
        if self._peek("not"):
            self._need_advanced()
            self.i += 1
            inner = self._unary()
            return lambda e: not inner(e)
        if self._peek("("):
            self.i += 1
            inner = self._or()
            self._take(")")
            return inner
        tok = self._take()
        name = tok.text
        if name.lower() in ("startswith", "endswith") and self._peek("("):
            if name.lower() == "endswith":
                self._need_advanced()
            self._take("(")
            prop = self._prop(self._take().text)
            self._take(",")
            value = self._literal()
            self._take(")")
            low = str(value).lower()
            if name.lower() == "startswith":
                return lambda e: str(e.get(prop) or "").lower().startswith(low)
            return lambda e: str(e.get(prop) or "").lower().endswith(low)
        if self._peek("/"):
            return self._lambda(name)
        prop = self._prop(name)
        op = self._take().text.lower()
        value = self._literal()
        return self._compare(prop, op, value)

    def _lambda(self, name: str) -> Predicate:
        prop = self._prop(name, collection=True)
        self._take("/")
        self._take("any")
        self._take("(")
        var = self._take().text
        self._take(":")
        if self._peek("startswith"):
            self.i += 1
            self._take("(")
            if self._take().text != var:
                raise bad_request("Invalid filter clause: lambda variable expected.")
            self._take(",")
            low = str(self._literal()).lower()
            self._take(")")
            self._take(")")
            return lambda e: any(str(v).lower().startswith(low) for v in e.get(prop) or [])
        if self._take().text != var:
            raise bad_request("Invalid filter clause: lambda variable expected.")
        if self._take().text.lower() != "eq":
            raise unsupported()
        value = self._literal()
        self._take(")")
        low = str(value).lower()
        return lambda e: any(str(v).lower() == low for v in e.get(prop) or [])

    def _compare(self, prop: str, op: str, value: object) -> Predicate:
        def norm(v: object) -> object:
            return v.lower() if isinstance(v, str) else v

        target = norm(value)
        if op == "eq":
            return lambda e: norm(e.get(prop)) == target
        if op == "ne":
            self._need_advanced()
            return lambda e: norm(e.get(prop)) != target
        if op in ("ge", "le"):
            if op == "ge":
                return lambda e: e.get(prop) is not None and str(norm(e.get(prop))) >= str(target)
            return lambda e: e.get(prop) is not None and str(norm(e.get(prop))) <= str(target)
        raise unsupported()

    def _literal(self) -> object:
        tok = self._take()
        if tok.kind == "str":
            return tok.text[1:-1].replace("''", "'")
        if tok.kind == "guid":
            return tok.text
        if tok.kind == "num":
            return float(tok.text) if "." in tok.text else int(tok.text)
        low = tok.text.lower()
        if low in ("true", "false"):
            return low == "true"
        if low == "null":
            return None
        raise bad_request(f"Invalid filter clause: literal expected, got '{tok.text}'.")

    def _prop(self, name: str, *, collection: bool = False) -> str:
        kind = self.filterable.get(name)
        if kind is None or (kind == "collection") != collection:
            raise unsupported(
                f"Unsupported or invalid query filter clause specified for property '{name}' of "
                f"resource '{self.entity}'."
            )
        return name

    def _need_advanced(self) -> None:
        if not self.advanced:
            raise unsupported()


def select(entity: Mapping[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """Keep only ``fields`` (all when None)."""
    if fields is None:
        return dict(entity)
    return {k: entity[k] for k in fields if k in entity}


def parse_select(
    raw: str | None, known: set[str] | frozenset[str], type_name: str
) -> list[str] | None:
    """``$select`` as a list; unknown names give Graph's 400."""
    if raw is None:
        return None
    fields = [f.strip() for f in raw.split(",") if f.strip()]
    for f in fields:
        if f not in known:
            raise bad_request(f"Could not find a property named '{f}' on type '{type_name}'.")
    return fields


def parse_top(raw: str | None) -> int:
    """``$top`` (1..999), default page size otherwise."""
    if raw is None:
        return DEFAULT_PAGE
    try:
        top = int(raw)
    except ValueError:
        raise bad_request(f"Invalid page size specified: '{raw}'.") from None
    if not 1 <= top <= MAX_TOP:
        raise unsupported(
            f"Invalid page size specified: '{top}'. Must be between 1 and {MAX_TOP} inclusive."
        )
    return top


def encode_skiptoken(offset: int) -> str:
    """An opaque continuation token."""
    return base64.urlsafe_b64encode(f"mim-o365-emulator:{offset}".encode()).decode().rstrip("=")


def decode_skiptoken(raw: str | None) -> int:
    """The offset inside a continuation token (0 when none)."""
    if raw is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        prefix, _, offset = text.partition(":")
        if prefix != "mim-o365-emulator":
            raise ValueError(text)
        return int(offset)
    except ValueError:
        raise bad_request("Invalid $skiptoken value.") from None
