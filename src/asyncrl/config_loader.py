"""Loading configs: TOML files (`-c`, later wins), then `--section.key value` overrides, then one
pydantic validation; and `--help` generated from the fields' docstrings and defaults."""

from __future__ import annotations

import difflib
import json
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from asyncrl.errors import UserError

T = TypeVar("T", bound="BaseConfig")


class ConfigError(UserError):
    """A config file or override is wrong; the message names the key and what was expected. The CLI prints
    it as one line and exits 2."""


class BaseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


# ---------------------------------------------------------------------------------------------------------
# Loading: TOML files, then command-line overrides, then one validation.


def load_config(cls: type[T], argv: list[str]) -> T:
    """Build `cls` from `-c/--config FILE` (repeatable, later wins) and `--section.key value` overrides."""
    files, overrides = _split_argv(argv)
    # Start from the command's own defaults, so overriding one key of a section keeps the section's other
    # defaults as this command sets them (not as the section class sets them).
    merged: dict[str, Any] = cls().model_dump(mode="json")
    for file in files:
        _deep_merge(merged, _read_toml(file))
    for dotted, raw in overrides:
        path = dotted.replace("-", "_").split(".")
        annotation = _field_annotation(cls, path)
        _set_dotted(merged, path, _parse_value(raw, annotation))
    try:
        return cls.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(_describe(cls, e)) from None


def _split_argv(argv: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    files: list[Path] = []
    overrides: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-c", "--config"):
            if i + 1 >= len(argv):
                raise ConfigError(f"{arg} needs a file: {arg} FILE.toml")
            files.append(Path(argv[i + 1]))
            i += 2
        elif arg.startswith("--config="):
            files.append(Path(arg.split("=", 1)[1]))
            i += 1
        elif arg.startswith("--"):
            key, has_eq, value = arg[2:].partition("=")
            if not key:
                raise ConfigError(f"empty option {arg!r}: write --section.key value")
            if not has_eq:
                if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                    raise ConfigError(f"--{key} needs a value: --{key} VALUE")
                value = argv[i + 1]
                i += 1
            overrides.append((key, value))
            i += 1
        else:
            raise ConfigError(f"unexpected argument {arg!r}: options are -c FILE and --section.key value")
    return files, overrides


def _read_toml(file: Path, including: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A TOML file's settings; `include = "other.toml"` (or a list, paths relative to the file) merges
    those files first, so a config can be another one plus a few changes."""
    if not file.is_file():
        raise ConfigError(f"config file {file} does not exist")
    try:
        table = tomllib.loads(file.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {file} is not valid TOML: {e}") from None
    includes = table.pop("include", [])
    merged: dict[str, Any] = {}
    for name in [includes] if isinstance(includes, str) else includes:
        included = (file.parent / name).resolve()
        if included in including or included == file.resolve():
            raise ConfigError(f"config file {file} includes {name}, which includes it back")
        _deep_merge(merged, _read_toml(included, (*including, file.resolve())))
    _deep_merge(merged, table)
    return merged


def _deep_merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def _set_dotted(into: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        if into.get(key) is None:  # a section absent by default (`X | None`) that a key now turns on
            into[key] = {}
        node = into[key]
        if not isinstance(node, dict):
            raise ConfigError(f"{'.'.join(path)}: {key} is a value, not a section")
        into = node
    into[path[-1]] = value


def _unwrap(annotation: Any) -> Any:
    """The BaseConfig class inside `X | None`, else the annotation itself."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        configs = [a for a in typing.get_args(annotation) if _is_config(a)]
        if configs:
            return configs[0]
    return annotation


def _is_config(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseConfig)


def _field_annotation(cls: type[BaseConfig], path: list[str]) -> Any:
    """The annotation of the field at `path`, or a ConfigError naming the unknown key."""
    node: Any = cls
    for depth, key in enumerate(path):
        node = _unwrap(node)
        if not _is_config(node):
            if typing.get_origin(node) is dict or node is dict:
                return Any
            raise ConfigError(f"unknown key {'.'.join(path)!r}: {'.'.join(path[:depth])} is not a section")
        if key not in node.model_fields:
            if node.model_config.get("extra") == "allow":
                return Any  # a section that passes its unlisted keys on (inference.vllm)
            raise ConfigError(_unknown_key_message(node, path[:depth], key))
        node = node.model_fields[key].annotation
    return node


def _unknown_key_message(cls: type[BaseConfig], prefix: list[str], key: str) -> str:
    dotted = ".".join([*prefix, key])
    close = difflib.get_close_matches(key, list(cls.model_fields), n=1)
    hint = f" (did you mean {'.'.join([*prefix, close[0]])!r}?)" if close else ""
    where = ".".join(prefix) or "top level"
    return f"unknown key {dotted!r}{hint}; {where} has: {', '.join(cls.model_fields)}"


def _parse_value(raw: str, annotation: Any) -> Any:
    """Strings stay strings where the field is textual; anything else is read as a JSON/TOML literal (a
    list or table also where the field takes either: `--model.lora.target-modules '["q_proj"]'`)."""
    if _accepts_plain_string(annotation) and not (
        raw.startswith(("[", "{")) and _accepts_container(annotation)
    ):
        return raw
    for parse in (json.loads, lambda s: tomllib.loads(f"v = {s}")["v"]):
        try:
            return parse(raw)
        except (ValueError, tomllib.TOMLDecodeError):
            continue
    return raw


def _accepts_container(annotation: Any) -> bool:
    union = isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
    options = typing.get_args(annotation) if union else (annotation,)
    return any(typing.get_origin(a) in (list, dict) or a in (list, dict) for a in options)


def _accepts_plain_string(annotation: Any) -> bool:
    if annotation in (str, Path):
        return True
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is Literal:
        return all(isinstance(a, str) for a in args)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return any(_accepts_plain_string(a) for a in args if a is not type(None))
    return False


def _describe(cls: type[BaseConfig], error: ValidationError) -> str:
    """Every problem of a config, one clause each."""
    return "; ".join(_describe_one(cls, details) for details in error.errors())


def _describe_one(cls: type[BaseConfig], details: Any) -> str:
    loc = [str(part) for part in details["loc"]]
    dotted = ".".join(loc)
    if details["type"] == "extra_forbidden":
        parent: Any = cls
        for key in loc[:-1]:
            if _is_config(parent):
                parent = _unwrap(parent.model_fields[key].annotation)
            elif typing.get_origin(parent) is list:  # `key` is an index: `[[orchestrator.eval]]` tables
                parent = _unwrap(typing.get_args(parent)[0])
        if _is_config(parent):
            return _unknown_key_message(parent, loc[:-1], loc[-1])
    if details["type"] == "value_error":
        # One of asyncrl's own validators: its message names the value; the input may be a whole section.
        message = details["msg"].removeprefix("Value error, ")
        return f"{dotted}: {message}" if dotted else message
    return f"{dotted}: {details['msg']}, got {details.get('input')!r}"


# ---------------------------------------------------------------------------------------------------------
# --help, generated from the fields.


def format_help(cls: type[BaseConfig], usage: str, values: BaseConfig | None = None) -> str:
    """Usage plus every field, with its doc and the value the command runs with when given nothing (its
    default as `values`, the config loaded from the command's files, holds it), grouped by section."""
    lines = [
        f"usage: {usage}",
        "",
        (cls.__doc__ or "").strip(),
        "",
        "  -c, --config FILE   TOML config file; repeatable, later files win; overrides win over files",
        "",
    ]
    lines += _field_lines(cls, [], (values or cls()).model_dump(mode="json"))
    return "\n".join(lines)


def _field_lines(cls: type[BaseConfig], prefix: list[str], values: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    sections: list[tuple[str, type[BaseConfig], str]] = []
    for name, field in cls.model_fields.items():
        sub = _unwrap(field.annotation)
        if _is_config(sub) and isinstance(values.get(name, {}), dict):
            sections.append((name, sub, field.description or ""))
            continue
        dotted = ".".join([*prefix, name])
        lines.append(
            f"  --{dotted} {_type_name(field.annotation)}  (default: {json.dumps(values.get(name))})"
        )
        lines.append(f"      {field.description or ''}")
    for name, sub, doc in sections:
        lines += ["", f"[{'.'.join([*prefix, name])}]  {doc}"]
        lines += _field_lines(sub, [*prefix, name], values.get(name) or {})
    return lines


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is Literal:
        return "{" + "|".join(str(a) for a in typing.get_args(annotation)) + "}"
    if isinstance(annotation, type):
        return annotation.__name__.upper()
    if typing.get_origin(annotation) is list and _is_config(typing.get_args(annotation)[0]):
        return "JSON LIST OF TABLES"  # in TOML, [[section.key]] tables
    return str(annotation).replace("typing.", "").upper()


# ---------------------------------------------------------------------------------------------------------
# Writing configs back, so a run dir records what ran and child processes read their part.


def to_toml(config: BaseConfig | dict[str, Any]) -> str:
    """TOML of a config (None values are left out: TOML has no null)."""
    data = config.model_dump(mode="json") if isinstance(config, BaseConfig) else config
    return _table(data, [])


def _table(table: dict[str, Any], prefix: list[str]) -> str:
    out = "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items() if v is not None and not _is_table(v))
    for key, value in ((k, v) for k, v in table.items() if _is_table(v)):
        path = [*prefix, key]
        header = ".".join(json.dumps(p) if not p.isidentifier() else p for p in path)
        if isinstance(value, dict):
            out += f"\n[{header}]\n" + _table(value, path)
        else:  # an array of tables (`[[orchestrator.eval]]`): a JSON object is no TOML
            out += "".join(f"\n[[{header}]]\n" + _table(item, path) for item in value)
    return out


def _is_table(value: Any) -> bool:
    """A table, or a non-empty array of tables."""
    if isinstance(value, list):
        return bool(value) and all(isinstance(item, dict) for item in value)
    return isinstance(value, dict)
