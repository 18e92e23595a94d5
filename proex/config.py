"""Typed configuration: dataclasses built from plain dicts that reject unknown keys.

Every config in proex is a dataclass. `build(cls, mapping, where)` turns a dict (from YAML, the command
line or a grid file) into one, and refuses a key the dataclass does not declare with a message that
names where the dict came from, the bad key and the keys that exist. There is no global config.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or key is wrong; the message names the source, the field and the fix."""


def read_yaml_mapping(path, what: str, keys: str, missing: type[Exception] = ConfigError) -> dict:
    """The mapping a YAML file holds (grid files, hyperparameter files, dataset cards), or an error naming the
    file: `missing` when it does not exist ("<path>: no such <what>"), ConfigError when it is not YAML or not a
    mapping ("a <what> is a mapping of keys (<keys>)"). An empty file is an empty mapping."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except FileNotFoundError:
        raise missing(f"{path}: no such {what}. Check the path.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a {what} is a mapping of keys ({keys}), not a {type(raw).__name__}")
    return dict(raw)


def build(cls: type[T], mapping: Mapping[str, Any] | None, where: str) -> T:
    """Instantiate dataclass `cls` from `mapping`, rejecting unknown keys and coercing simple types.

    where: a human description of the source ("grids/smoke.yaml: model", "--set") used in errors.
    A field typed `Literal[...]` accepts only the listed values; a dataclass with a `validate()` method (range
    checks a type cannot say) has it called, its ValueError ("key: why") reported as a ConfigError at `where`.
    """
    mapping = dict(mapping or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown} for {cls.__name__}; "
            f"valid keys are {sorted(fields)}. Fix the spelling or remove the key."
        )
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(value, hints.get(name), f"{where}.{name}") for name, value in mapping.items()}
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValueError as exc:  # "key: what is wrong" -> "<where>.key: what is wrong"
            raise ConfigError(f"{where}.{exc}") from None
    return obj


def replace(obj: T, overrides: Mapping[str, Any] | None, where: str) -> T:
    """Return a copy of dataclass `obj` with `overrides` applied (same checks as `build`)."""
    merged = {**dataclasses.asdict(obj), **dict(overrides or {})}
    return build(type(obj), merged, where)


def parse_overrides(items: list[str] | tuple[str, ...], where: str = "--set") -> dict[str, Any]:
    """Parse `key=value` strings (values as YAML scalars/lists) into a dict; no eval."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{where}: expected key=value, got {item!r}")
        key, raw = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(raw)
    return out


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Coerce YAML scalars to the declared field type (int -> float, list -> tuple) and check the kind."""
    if hint is None or value is None:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Literal:
        if not any(value == a and type(value) is type(a) for a in args):
            allowed = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{where}: {value!r} is not allowed; use one of {allowed}")
        return value
    if origin is typing.Union or str(origin) == "types.UnionType":
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _coerce(value, non_none[0], where)
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    if origin is tuple and isinstance(value, (list, tuple)):
        inner = args[0] if args else None
        return tuple(_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    if hint in (int, float, bool, str):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r} ({type(value).__name__})")
    return value
