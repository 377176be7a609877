"""Reading and writing campaign files.

:func:`load_campaign` reads a YAML file into a :class:`~discovery.campaign.spec.CampaignSpec`.
Every problem (YAML syntax, unknown key, wrong type, unknown ion or oracle, a missing file) is
reported as one line ``file:line field.path: message``, with the line of the offending value, all
problems of a file at once, in a :class:`CampaignError`.

The YAML is read safely and strictly:

- with PyYAML's safe loader, composed into nodes first so that every value keeps its line;
- anchors and aliases are refused (they make a file hard to read and allow "billion laughs"
  expansion), as are tags other than the plain YAML types (``!!python/object/apply:...``,
  ``!!binary``, ``!include``: nothing but plain data is ever constructed), documents nested deeper
  than :data:`MAX_DEPTH` levels, files larger than :data:`MAX_BYTES`, duplicate keys, integers too
  long to convert and files that are not UTF-8 text;
- booleans are only ``true`` and ``false`` (as in YAML 1.2) and dates are not converted, so the
  element symbol ``No`` and a name like ``2024-05-01`` stay strings; a boolean is not taken for a
  number (``batch_size: true``) nor a word for a boolean (``drop_invalid: yes``).

Relative paths are resolved against the campaign file's folder after validation; see
:meth:`CampaignSpec.resolved`.
"""

from __future__ import annotations

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "CampaignError",
    "campaign_schema",
    "dump_campaign",
    "load_campaign",
    "load_campaign_text",
]

import difflib
import os
import re
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from discovery.campaign.spec import CampaignSpec, FieldProblems, Loc, _got, format_loc
from discovery.errors import DiscoveryError

#: Largest campaign file read, in bytes (1 MiB).
MAX_BYTES = 1 << 20
#: Deepest nesting of mappings and lists accepted in a campaign file.
MAX_DEPTH = 50

#: One problem: 1-based line (None for the file as a whole), field path, message.
Problem = tuple[int | None, str, str]


class CampaignError(DiscoveryError):
    """A campaign file that cannot be read or validated.

    Attributes:
        file: the file as the caller named it.
        line: 1-based line of the first problem (None when it concerns the whole file).
        field: field path of the first problem (``objectives[1].direction``; "" for none).
        problems: every problem as ``(line, field_path, message)``, sorted by line.
    """

    def __init__(self, file: str, problems: Sequence[Problem]) -> None:
        self.file = file
        self.problems = sorted(dict.fromkeys(problems), key=lambda p: p[0] or 0) or [
            (None, "", "invalid campaign")
        ]
        self.line, self.field = self.problems[0][:2]
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(self._format(*problem) for problem in self.problems)

    def _format(self, line: int | None, field: str, message: str) -> str:
        where = self.file if line is None else f"{self.file}:{line}"
        return f"{where} {field}: {message}" if field else f"{where}: {message}"


# --------------------------------------------------------------------------------------------
# YAML


class _Loader(yaml.SafeLoader):
    """The safe loader with YAML 1.2 booleans (``true``/``false`` only) and no timestamps."""


_BOOL = "tag:yaml.org,2002:bool"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class _Dumper(yaml.SafeDumper):
    """Block style, except lists of plain values, which are written inline (``[Na, K]``)."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(not isinstance(item, dict | list) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


class _Failed(Exception):
    """Problems found while reading the YAML (before validation)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems


def _yaml_problem(exc: yaml.YAMLError) -> Problem:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        message = f"invalid YAML: {exc.problem}"
        if exc.context and str(exc.problem).startswith("but "):
            message = f"invalid YAML: {exc.context}, {exc.problem}"
        elif exc.context and exc.context_mark is not None:
            message += f" ({exc.context} that starts on line {exc.context_mark.line + 1})"
        return exc.problem_mark.line + 1, "", message
    if isinstance(exc, yaml.reader.ReaderError):
        return None, "", f"not a text file: invalid character #x{exc.character:04x}"
    return None, "", f"invalid YAML: {exc}"


_CORE = "tag:yaml.org,2002:"
#: Explicit tags a campaign file may carry: the plain YAML types. Any other tag (``!!python/...``,
#: ``!!binary``, ``!!set``, a local ``!include``) is refused before anything is constructed.
_PLAIN_TAGS = frozenset(_CORE + t for t in ("str", "int", "float", "bool", "null", "seq", "map"))


def _scan(text: str) -> dict[tuple[int, int], str]:
    """Refuse anchors, aliases and deep nesting while streaming events (before any node exists);
    return the positions ``(line, column)``, 0-based, of nodes with a tag other than the plain
    YAML types, and the tag as written (:func:`_construct` refuses them, naming the field)."""
    depth = 0
    tagged: dict[tuple[int, int], str] = {}
    for event in yaml.parse(text, Loader=_Loader):
        line = None if event.start_mark is None else event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            raise _Failed(
                [(line, "", f"aliases (*{event.anchor}) are not allowed; write the value out")]
            )
        if isinstance(event, yaml.NodeEvent) and event.anchor is not None:
            raise _Failed(
                [(line, "", f"anchors (&{event.anchor}) are not allowed; write the value out")]
            )
        tag = getattr(event, "tag", None)
        if tag is not None and tag not in _PLAIN_TAGS:
            shown = "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag
            if event.start_mark is None:  # the parser marks every event; never let a tag through
                raise _Failed([(None, "", _tag_message(shown))])
            tagged[(event.start_mark.line, event.start_mark.column)] = shown
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _Failed([(line, "", f"nested deeper than {MAX_DEPTH} levels")])
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return tagged


class _Marks:
    """Lines of the YAML nodes by field path: ``{loc: (key line or None, value line)}``."""

    def __init__(self) -> None:
        self.lines: dict[Loc, tuple[int | None, int]] = {}
        self.collections: set[Loc] = set()

    def add(self, loc: Loc, key: yaml.Node | None, value: yaml.Node) -> None:
        self.lines[loc] = (
            None if key is None else key.start_mark.line + 1,
            value.start_mark.line + 1,
        )
        if isinstance(value, yaml.MappingNode | yaml.SequenceNode):
            self.collections.add(loc)

    def line(self, loc: Loc, *, at_key: bool = False) -> int | None:
        """The line of the value at ``loc``: its key's line for an unknown key or a mapping or
        list value, the value's own line otherwise; for a path that is not in the file (a missing
        field), the line of the nearest enclosing value that is."""
        if loc in self.lines:
            key_line, value_line = self.lines[loc]
            if key_line is not None and (at_key or loc in self.collections):
                return key_line
            return value_line
        for n in range(len(loc) - 1, -1, -1):
            if loc[:n] in self.lines:
                key_line, value_line = self.lines[loc[:n]]
                return key_line if key_line is not None else value_line
        return None


def _tag_message(shown: str) -> str:
    return (
        f"the tag {shown} is not allowed; a campaign file is plain YAML (mappings, lists, "
        "strings, numbers, true/false, null) without tags"
    )


def _tag_problem(node: yaml.Node, loc: Loc, tagged: dict[tuple[int, int], str]) -> None:
    shown = tagged.get((node.start_mark.line, node.start_mark.column))
    if shown is not None:
        raise _Failed([(node.start_mark.line + 1, format_loc(loc), _tag_message(shown))])


def _construct(
    loader: _Loader,
    node: yaml.Node,
    loc: Loc,
    marks: _Marks,
    tagged: dict[tuple[int, int], str],
) -> Any:
    """Plain Python data from a node tree, recording each value's line; mapping keys are kept as
    written (strings). A node ``tagged`` (see :func:`_scan`) is refused before anything of it is
    constructed."""
    _tag_problem(node, loc, tagged)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        problems: list[Problem] = []
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            _tag_problem(key_node, loc, tagged)
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append((line, format_loc(loc), "keys must be plain names"))
                continue
            key = str(key_node.value)
            if key in first_line:
                problems.append(
                    (
                        line,
                        format_loc((*loc, key)),
                        f"duplicate key {key!r} (first given on line {first_line[key]})",
                    )
                )
                continue
            first_line[key] = line
            marks.add((*loc, key), key_node, value_node)
            out[key] = _construct(loader, value_node, (*loc, key), marks, tagged)
        if problems:
            raise _Failed(problems)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            marks.add((*loc, i), None, item)
            items.append(_construct(loader, item, (*loc, i), marks, tagged))
        return items
    try:
        return loader.construct_object(node)
    except yaml.YAMLError as exc:
        line = node.start_mark.line + 1
        reason = getattr(exc, "problem", None) or str(exc)
        raise _Failed([(line, format_loc(loc), f"cannot read value: {reason}")]) from None
    except ValueError:  # an integer of more digits than Python converts (sys.int_info)
        line = node.start_mark.line + 1
        shown = str(node.value)
        shown = shown if len(shown) <= 20 else f"{shown[:12]}... ({len(shown)} characters)"
        raise _Failed(
            [(line, format_loc(loc), f"cannot read value: {shown} is too large")]
        ) from None


def _read_yaml(text: str) -> tuple[Any, _Marks]:
    """Data and node lines of a YAML text; raises :class:`_Failed`."""
    try:
        tagged = _scan(text)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            marks = _Marks()
            if node is None:
                raise _Failed([(None, "", "empty campaign file")])
            marks.add((), None, node)
            data = _construct(loader, node, (), marks, tagged)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise _Failed([_yaml_problem(exc)]) from None
    except RecursionError:  # guarded by _scan; kept for safety
        raise _Failed([(None, "", f"nested deeper than {MAX_DEPTH} levels")]) from None
    if not isinstance(data, dict):
        kind = _got(data) if isinstance(data, list) else f"the value {_got(data)}"
        raise _Failed(
            [(node.start_mark.line + 1, "", f"expected a mapping of campaign fields, got {kind}")]
        )
    return data, marks


# --------------------------------------------------------------------------------------------
# Validation errors in words


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _union_members(tp: Any) -> list[type[BaseModel]] | None:
    if get_origin(tp) in (Union, types.UnionType):
        args = get_args(tp)
        if all(_is_model(a) for a in args):
            return list(args)
    return None


def _tags(members: Sequence[type[BaseModel]]) -> list[str]:
    return [str(tag) for m in members for tag in get_args(m.model_fields["kind"].annotation)]


def _walk(loc: Sequence[str | int]) -> tuple[Loc, Any]:
    """The data path of a pydantic error location (without the tags pydantic inserts for
    discriminated unions) and the type found at its end (None when unknown)."""
    tp: Any = CampaignSpec
    out: list[str | int] = []
    for part in loc:
        tp = _unwrap(tp)
        members = _union_members(tp)
        if members is not None:
            chosen = [m for m in members if str(part) in _tags([m])]
            if chosen:
                tp = chosen[0]
                continue
        out.append(part)
        origin = get_origin(tp)
        args = get_args(tp)
        if _is_model(tp):
            field = tp.model_fields.get(str(part))
            tp = None if field is None else field.annotation
        elif origin in (list, tuple) and args:
            tp = (
                args[part]
                if origin is tuple and isinstance(part, int) and part < len(args)
                else args[0]
            )
        elif origin is dict and args:
            tp = args[1]
        else:
            tp = None
    return tuple(out), _unwrap(tp)


def _or(options: Sequence[str]) -> str:
    return options[0] if len(options) == 1 else f"{', '.join(options[:-1])} or {options[-1]}"


_MESSAGES = {
    "missing": "required field missing",
    "int_type": "expected an integer, got {got}",
    "int_parsing": "expected an integer, got {got}",
    "int_from_float": "expected an integer, got {got}",
    "float_type": "expected a number, got {got}",
    "float_parsing": "expected a number, got {got}",
    "finite_number": "expected a finite number, got {got}",
    "bool_type": "expected true or false, got {got}",
    "bool_parsing": "expected true or false, got {got}",
    "string_type": "expected a string, got {got}",
    "list_type": "expected a list, got {got}",
    "tuple_type": "expected a list, got {got}",
    "dict_type": "expected a mapping, got {got}",
    "model_type": "expected a mapping, got {got}",
    "model_attributes_type": "expected a mapping, got {got}",
    "path_type": "expected a path, got {got}",
    "literal_error": "expected {expected}, got {got}",
    "greater_than": "must be > {gt}, got {got}",
    "greater_than_equal": "must be >= {ge}, got {got}",
    "less_than": "must be < {lt}, got {got}",
    "less_than_equal": "must be <= {le}, got {got}",
    "too_short": "expected at least {min_length} item(s), got {actual_length}",
    "too_long": "expected at most {max_length} item(s), got {actual_length}",
    "string_too_short": "expected at least {min_length} character(s), got {got}",
}


def _translate(error: ErrorDetails) -> list[tuple[Loc, str, bool]]:
    """``(data path, message, points at the key)`` for one pydantic error."""
    loc, end_type = _walk(error["loc"])
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    got = _got(error.get("input"))
    if kind in ("value_error", "assertion_error"):
        exc = ctx.get("error")
        if isinstance(exc, FieldProblems):
            return [((*loc, *sub), message, False) for sub, message in exc.problems]
        return [(loc, str(exc) if exc is not None else error["msg"], False)]
    if kind == "extra_forbidden":
        name = str(loc[-1])
        _, parent = _walk(error["loc"][:-1])
        allowed = list(parent.model_fields) if _is_model(parent) else []
        close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
        return [(loc, f"unknown field {name!r}{hint if allowed else ''}", True)]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        members = _union_members(end_type) or []
        expected = _or([repr(t) for t in _tags(members)])
        if kind == "union_tag_not_found":
            return [((*loc, "kind"), f"required field missing (expected {expected})", False)]
        return [((*loc, "kind"), f"expected {expected}, got {ctx.get('tag')!r}", False)]
    template = _MESSAGES.get(kind)
    if template is not None:
        try:
            return [(loc, template.format(got=got, **ctx), False)]
        except (KeyError, IndexError):
            pass
    message = error["msg"]
    return [(loc, f"{message[:1].lower()}{message[1:]}, got {got}", False)]


def _strict_scalars(tp: Any, value: Any, loc: Loc) -> list[tuple[Loc, str]]:
    """Values pydantic's lax mode would convert but a campaign file must not use: ``true`` or
    ``false`` for a number, and anything but ``true``/``false`` for a boolean. ``tp`` is the type
    the campaign model expects at ``loc``; unions of sections are resolved by their ``kind``."""
    tp = _unwrap(tp)
    members = _union_members(tp)
    if members is not None:
        chosen = [
            m for m in members if isinstance(value, dict) and str(value.get("kind")) in _tags([m])
        ]
        tp = chosen[0] if chosen else None
    origin, args = get_origin(tp), get_args(tp)
    out: list[tuple[Loc, str]] = []
    if _is_model(tp) and isinstance(value, dict):
        for key, item in value.items():
            field = tp.model_fields.get(key)
            if field is not None:
                out += _strict_scalars(field.annotation, item, (*loc, key))
    elif origin in (list, tuple) and args and isinstance(value, list):
        for i, item in enumerate(value):
            item_tp = (
                args[i] if origin is tuple and i < len(args) and args[-1] is not ... else args[0]
            )
            out += _strict_scalars(item_tp, item, (*loc, i))
    elif origin is dict and len(args) == 2 and isinstance(value, dict):
        for key, item in value.items():
            out += _strict_scalars(args[1], item, (*loc, key))
    elif tp in (int, float) and isinstance(value, bool):
        kind = "an integer" if tp is int else "a number"
        out.append((loc, f"expected {kind}, got {_got(value)}"))
    elif tp is bool and value is not None and not isinstance(value, bool):
        out.append((loc, f"expected true or false, got {_got(value)}"))
    return out


def _validation_problems(exc: ValidationError, marks: _Marks) -> list[Problem]:
    problems: list[Problem] = []
    for error in exc.errors():
        for loc, message, at_key in _translate(error):
            problems.append((marks.line(loc, at_key=at_key), format_loc(loc), message))
    return problems


# --------------------------------------------------------------------------------------------
# Public API


def load_campaign_text(
    text: str,
    *,
    source: str = "<campaign>",
    base_dir: str | os.PathLike[str] | None = None,
) -> CampaignSpec:
    """Validate campaign YAML text.

    Args:
        text: the YAML.
        source: the name errors give the file.
        base_dir: folder that relative paths are read from (default: the current folder). The
            returned spec's paths are absolute (:meth:`CampaignSpec.resolved`).

    Raises:
        CampaignError: listing every problem as ``source:line field: message``.
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    try:
        data, marks = _read_yaml(text)
    except _Failed as failed:
        raise CampaignError(source, failed.problems) from None
    strict = [
        (marks.line(loc), format_loc(loc), message)
        for loc, message in _strict_scalars(CampaignSpec, data, ())
    ]
    try:
        spec = CampaignSpec.model_validate(data, context={"base_dir": base})
    except ValidationError as exc:
        problems = _validation_problems(exc, marks)
        flagged = {field for _, field, _ in problems}
        raise CampaignError(source, problems + [p for p in strict if p[1] not in flagged]) from None
    if strict:
        raise CampaignError(source, strict)
    return spec.resolved(base)


def load_campaign(path: str | os.PathLike[str]) -> CampaignSpec:
    """Read and validate a campaign file.

    Relative paths in the file (``space.path``, ``initial_data.path``, ``oracle.options.path``,
    ``workdir``) are read from the file's folder; the returned spec holds them as absolute paths,
    and ``workdir`` is always set (default: ``runs/<name>`` next to the file).

    Raises:
        CampaignError: naming the file as given, the line and the field of every problem.
    """
    source = os.fspath(path)
    file = Path(path)
    try:
        size = file.stat().st_size
        if file.is_dir():
            raise CampaignError(source, [(None, "", "is a folder, not a campaign file")])
        if size > MAX_BYTES:
            raise CampaignError(
                source, [(None, "", f"file is larger than {MAX_BYTES} bytes ({size} bytes)")]
            )
        raw = file.read_bytes()
    except FileNotFoundError:
        raise CampaignError(source, [(None, "", "no such file")]) from None
    except OSError as exc:
        raise CampaignError(source, [(None, "", f"cannot read: {exc.strerror}")]) from None
    try:
        if b"\x00" in raw:
            raise UnicodeDecodeError("utf-8", raw, raw.index(b"\x00"), len(raw), "NUL byte")
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CampaignError(
            source, [(None, "", "not a text file (a campaign is YAML text in UTF-8)")]
        ) from None
    return load_campaign_text(text, source=source, base_dir=file.parent)


def campaign_schema() -> dict[str, Any]:
    """The JSON schema of a campaign file (what ``discover schema`` prints)."""
    schema = CampaignSpec.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def dump_campaign(spec: CampaignSpec) -> str:
    """YAML text that :func:`load_campaign` reads back to an equal spec.

    Only fields that were given (in the file or to the constructor) are written, and paths are
    written as the spec holds them: relative ones stay relative (read again from the folder the
    text is saved in), absolute ones (as in a loaded spec) stay absolute.
    """
    data = spec.model_dump(mode="json", exclude_unset=True)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
