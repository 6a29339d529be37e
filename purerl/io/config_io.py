"""Config dataclasses to and from JSON files and command-line flags.

A config file is a JSON object of field values; keys starting with ``_`` are notes and are ignored, so a
saved run config (``{"_algorithm": "ppo", ...}``) and an experiment config with a ``"_source"`` note both
load. Precedence: dataclass defaults < ``--config FILE`` < explicit command-line flags.
"""

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_optional(tp: Any) -> tuple[bool, Any]:
    """``(True, X)`` for ``X | None``; ``(False, tp)`` otherwise."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return True, args[0]
    return False, tp


def parse_value(field: str, tp: Any, text: str) -> Any:
    """Parses one command-line string into a value of the field's type, with a one-line error if it can't."""
    optional, base = _is_optional(tp)
    if optional and text.lower() == "none":
        return None
    parts = [part.strip() for part in text.split(",")] if text.strip() else []  # a tuple's items; "": none
    if typing.get_origin(base) is tuple and "" in parts:
        raise ValueError(f"--{field.replace('_', '-')}: an empty item in {text!r} (comma-separated values)")
    try:
        if typing.get_origin(base) is tuple:
            (item_type, *_) = typing.get_args(base)
            return tuple(item_type(part) for part in parts)
        if base is bool:
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ValueError
        return base(text)
    except ValueError:
        kind = getattr(base, "__name__", str(base))
        raise ValueError(f"--{field.replace('_', '-')}: cannot read {text!r} as {kind}") from None


def config_to_dict(config: Any) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def config_from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Builds ``cls`` from a dict; unknown keys are an error, lists become tuples where the field is a tuple."""
    types_ = field_types(cls)
    values = {k: v for k, v in values.items() if not k.startswith("_")}
    unknown = sorted(set(values) - set(types_))
    if unknown:
        raise ValueError(f"unknown config field(s) {', '.join(unknown)}; valid: {', '.join(types_)}")
    converted = {}
    for name, value in values.items():
        _, base = _is_optional(types_[name])
        if typing.get_origin(base) is tuple and isinstance(value, str):  # a field that once held one string
            value = parse_value(name, types_[name], value)
        elif typing.get_origin(base) is tuple and value is not None and not isinstance(value, list | tuple):
            raise ValueError(f"config field {name} takes a list, got {value!r}")
        converted[name] = tuple(value) if typing.get_origin(base) is tuple and value is not None else value
    return cls(**converted)


def stored_config_differences(stored: dict[str, Any] | None, config: Any) -> list[str]:
    """What differs between ``stored`` (a checkpoint's config read back from JSON) and ``config``, one
    ``"FIELD is A there and B here"`` per field; empty when they are the same run's. A field added to the
    config class since the checkpoint was written takes its default there, as it did before the field
    existed, so upgrading purerl does not orphan a run that leaves the new field at its default."""
    if stored is None:
        return ["the checkpoint stores no config"]
    try:
        there = config_to_dict(config_from_dict(type(config), stored))
    except (TypeError, ValueError) as error:  # a field this version does not know, or a value it cannot read
        return [str(error)]
    here = config_to_dict(config)
    return [f"{name} is {there[name]!r} there and {here[name]!r} here" for name in here if there[name] != here[name]]


def load_config_values(path: str | Path) -> dict[str, Any]:
    try:
        values = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"config file {str(path)!r} does not exist") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"config file {str(path)!r} is not valid JSON: {error}") from None
    if not isinstance(values, dict):
        raise ValueError(f"config file {str(path)!r} must hold a JSON object of config fields")
    return values


def save_config(config: Any, path: Path, algorithm: str) -> None:
    path.write_text(json.dumps({"_algorithm": algorithm} | config_to_dict(config), indent=2) + "\n")


def add_config_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--field-name`` flag per config field (as text, parsed later, so defaults stay the dataclass's)."""
    group = parser.add_argument_group(f"{cls.__name__} fields (defaults in brackets)")
    for field in dataclasses.fields(cls):
        tp = field_types(cls)[field.name]
        default = field.default
        base = _is_optional(tp)[1]
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        group.add_argument(
            f"--{field.name.replace('_', '-')}",
            dest=f"field_{field.name}",
            metavar="A,B,..." if typing.get_origin(base) is tuple else getattr(base, "__name__", "VALUE").upper(),
            default=argparse.SUPPRESS,
            help=f"{field.metadata.get('help', '')} [{shown}]".replace("%", "%%"),  # argparse %-formats help
        )


def config_from_args(cls: type[C], args: argparse.Namespace) -> C:
    """Defaults, then ``args.config`` (if any), then every flag given explicitly."""
    values = load_config_values(args.config) if getattr(args, "config", None) else {}
    types_ = field_types(cls)
    for name, text in vars(args).items():
        if name.startswith("field_"):
            field = name.removeprefix("field_")
            values[field] = parse_value(field, types_[field], text)
    return config_from_dict(cls, values)
