"""One line per configuration error: ``FILE:LINE: KEY: what is wrong; what is accepted``.

pydantic and tomllib describe errors for programmers (``Input tag 'redis' found
using _provider_type() ...``); an operator needs the place in their file and
the values that would work. The TOML parser keeps no positions, so a key's
line is found by reading the file's table headers and ``key =`` lines.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_.\"' -]+?)\s*=")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column \d+\)$")
_DURATIONS = 'seconds (30), "30s", "250ms", "5m", "1h", "1d" or ISO 8601 ("PT30S")'


def describe_config_error(
    error: Exception, config_file: str | Path | None, model: type[BaseModel]
) -> list[str]:
    """Return one line per problem in ``error``, raised while loading ``config_file``.

    Args:
        error: What :func:`~jobwire.gateway.load_settings` raised.
        config_file: The TOML file given to it, if any; lines are located in it.
        model: The settings model, to list the keys a table accepts.
    """
    if isinstance(error, tomllib.TOMLDecodeError):
        message = str(error)
        position = _TOML_POSITION.search(message)
        where = f"{config_file}:{position[1]}" if position else str(config_file)
        return [f"{where}: invalid TOML: {_TOML_POSITION.sub('', message)}"]
    if not isinstance(error, ValidationError):
        return [str(error)]
    text = Path(config_file).read_text() if config_file is not None else ""
    lines = []
    for details in error.errors(include_input=False):
        raw = tuple(str(part) for part in details["loc"])
        message, loc = _message(details, _without_tags(model, raw), _keys_at(model, raw[:-1]))
        key = ".".join(loc) or "settings"
        lines.append(f"{_where(loc, text, config_file)}{key}: {message}")
    return lines


def locate_key(key: str, config_file: str | Path | None) -> str:
    """``FILE:LINE: `` of the dotted ``key`` in ``config_file`` (or its variable), else empty."""
    text = Path(config_file).read_text() if config_file is not None else ""
    return _where(tuple(key.split(".")), text, config_file)


def _message(
    details: ErrorDetails, loc: tuple[str, ...], known: list[str]
) -> tuple[str, tuple[str, ...]]:
    """What is wrong and what is accepted, and the key it is about."""
    kind, ctx = details["type"], details.get("ctx") or {}
    if kind == "union_tag_invalid":
        expected = str(ctx.get("expected_tags", "")).replace("'", "")
        return f"unknown provider {ctx.get('tag')!r}; expected one of: {expected}", (*loc, "type")
    if kind == "extra_forbidden":
        accepted = f"; expected one of: {', '.join(known)}" if known else ""
        return f"unknown key{accepted}", loc
    if kind == "missing":
        return "required key is missing", loc
    if kind.startswith("time_delta"):
        return f"invalid duration; expected {_DURATIONS}", loc
    message = details["msg"].removeprefix("Value error, ")
    return message, loc


def _keys_at(model: type[BaseModel], loc: Sequence[str]) -> list[str]:
    """The keys the table at ``loc`` accepts (empty when it cannot be told)."""
    current: type[BaseModel] | None = model
    choices: list[type[BaseModel]] = []
    named = False  # the part is a name of a table of tables ([queues.NAME])
    for part in loc:
        if choices:  # a tagged union: pydantic's location names the tag
            current = next((m for m in choices if _tag(m) == part), None)
            choices = []
            continue
        if named:
            named = False
            continue
        field = current.model_fields.get(part) if current is not None else None
        if field is None:
            return []
        models = _models(field.annotation)
        named = get_origin(field.annotation) is dict
        current, choices = (models[0], []) if len(models) == 1 else (None, models)
    return [] if current is None else sorted(current.model_fields)


def _tag(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("type")
    return None if field is None else str(field.default)


def _without_tags(model: type[BaseModel], loc: tuple[str, ...]) -> tuple[str, ...]:
    """``loc`` without the tag pydantic inserts after a tagged union (``provider.sqs.x``)."""
    if len(loc) < 2 or loc[0] not in model.model_fields:
        return loc
    tags = {_tag(member) for member in _models(model.model_fields[loc[0]].annotation)}
    return (loc[0], *loc[2:]) if len(tags) > 1 and loc[1] in tags else loc


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside ``annotation`` (through Annotated, unions, Optional)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models(arg)]


def _where(loc: tuple[str, ...], text: str, config_file: str | Path | None) -> str:
    """``FILE:LINE: `` of the key, or the variable that set it, or nothing."""
    variable = "JOBWIRE_" + "__".join(loc).upper()
    if loc and variable in os.environ:
        return f"${variable}: "
    line = _line_of(loc, text)
    if config_file is None:
        return ""
    return f"{config_file}:{line}: " if line else f"{config_file}: "


def _line_of(loc: tuple[str, ...], text: str) -> int | None:
    """The line of the key at ``loc``, else of its nearest enclosing table."""
    best: tuple[int, int] | None = None  # (matched depth, line)
    for number, key in _keys(text):
        depth = _common(key, loc)
        if depth and (best is None or depth > best[0]):
            best = (depth, number)
    return None if best is None else best[1]


def _keys(text: str) -> Iterator[tuple[int, tuple[str, ...]]]:
    """Every table header and key of ``text`` with its line number, as full paths."""
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        if header := _HEADER.match(line):
            table = _path(header[1])
            yield number, table
        elif key := _KEY.match(line):
            yield number, (*table, *_path(key[1]))


def _path(dotted: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in dotted.split("."))


def _common(key: tuple[str, ...], loc: tuple[str, ...]) -> int:
    """How many leading parts ``key`` shares with ``loc`` (0 unless all of ``key`` does)."""
    return len(key) if key == loc[: len(key)] else 0
