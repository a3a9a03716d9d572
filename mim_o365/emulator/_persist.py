"""Save and load an emulated tenant as JSON (the sandbox's state between CLI runs).

The file holds the automation admin's secret, so it is written owner-only and atomically.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import types
import typing
from datetime import datetime
from pathlib import Path
from typing import Any

from mim_o365.emulator._models import DirectoryState

FORMAT = "mim-o365-emulator-state/1"


def _dump(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _dump(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value


def _load(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _load(inner[0], value)
    if origin is list:
        (item,) = typing.get_args(tp)
        return [_load(item, v) for v in value]
    if origin is dict:
        _, item = typing.get_args(tp)
        return {k: _load(item, v) for k, v in value.items()}
    if tp is datetime:
        return datetime.fromisoformat(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(
            **{
                f.name: _load(hints[f.name], value[f.name])
                for f in dataclasses.fields(tp)
                if f.name in value
            }
        )
    return value


def dumps(state: DirectoryState) -> str:
    """JSON text of ``state``."""
    return json.dumps({"format": FORMAT, "directory": _dump(state)}, indent=1)


def loads(text: str) -> DirectoryState:
    """A state from :func:`dumps` output.

    Raises:
        ValueError: not a state file of this format.
    """
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} file")
    state: DirectoryState = _load(DirectoryState, data["directory"])
    return state


def save(state: DirectoryState, path: Path) -> None:
    """Write ``state`` to ``path`` atomically, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(dumps(state))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> DirectoryState:
    """Read a state file."""
    return loads(path.read_text(encoding="utf-8"))
