"""Frozen-dataclass configs: building from plain mappings with strict validation, and stable hashing.

Every method's hyperparameters are a frozen dataclass whose fields carry ``metadata={"help": ...}``. Suite files
and the CLI produce plain mappings; :func:`build_config` turns one into the dataclass, rejecting unknown keys
(with a "did you mean") and values of the wrong type, and :func:`config_hash` gives a stable id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from benchmark.core.errors import SplitbenchError, did_you_mean


def field(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with help text (shown by ``splitbench list --verbose`` and in docs)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple for sequence defaults so configs stay hashable")
    omit = {"omit_default": True} if kw.pop("omit_default", False) else {}
    return dataclasses.field(default=default, metadata={"help": help, **omit, **kw.pop("metadata", {})}, **kw)


def config_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except SplitbenchError as e:
                errors.append(str(e))
        raise SplitbenchError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise SplitbenchError(f"{where}: expected one of {list(args)}, got {value!r}"
                                  f"{did_you_mean(value, map(str, args))}")
        return value
    if origin in (tuple, list) or tp in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise SplitbenchError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:  # fixed length: tuple[int, float]
            if len(value) != len(args):
                raise SplitbenchError(f"{where}: expected a list of {len(args)} items "
                                      f"({', '.join(map(_type_name, args))}), got {value!r}")
            return tuple(_coerce(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, args)))
        item_t = args[0] if args else Any
        return tuple(_coerce(v, item_t, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise SplitbenchError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise SplitbenchError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise SplitbenchError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise SplitbenchError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise SplitbenchError(f"{where}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise SplitbenchError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise SplitbenchError(f"{where}: expected a string, got {value!r}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build_config(tp, value, where)
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def build_config(cls: type, values: Mapping[str, Any] | None = None, where: str = "config") -> Any:
    """Build the frozen dataclass ``cls`` from ``values``, strictly.

    Args:
        cls: a dataclass type.
        values: field values; missing fields take their defaults.
        where: a path used in error messages, e.g. ``"suite quick: defenses[2].config"``.

    Raises:
        SplitbenchError: on an unknown key (with the closest field names) or a value of the wrong type.

    Example:
        >>> import dataclasses
        >>> @dataclasses.dataclass(frozen=True)
        ... class C:
        ...     lr: float = 0.1
        >>> build_config(C, {"lr": "0.5"})
        C(lr=0.5)
    """
    if values is None:
        values = {}
    if isinstance(values, cls):
        return values
    if not isinstance(values, Mapping):
        raise SplitbenchError(f"{where}: expected a mapping of {cls.__name__} fields, got {values!r}")
    fields = config_fields(cls)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise SplitbenchError(
                f"{where}: unknown key {key!r} for {cls.__name__}{did_you_mean(key, fields)} "
                f"(valid keys: {', '.join(fields)})"
            )
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}")
    try:
        cfg = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise SplitbenchError(f"{where}: {exc}") from exc
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValueError as exc:
            raise SplitbenchError(f"{where}: {exc}") from exc
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    is_instance = dataclasses.is_dataclass(cfg) and not isinstance(cfg, type)
    return json.loads(canonical_json(_asdict(cfg) if is_instance else cfg))


def _asdict(obj: Any) -> Any:
    """``dataclasses.asdict``, except that a field declared with ``omit_default=True`` is left out while it holds
    its default: a field added after records exist keeps every existing config (and so its hash) as it was."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.metadata.get("omit_default") and f.default is not dataclasses.MISSING and value == f.default:
                continue
            out[f.name] = _asdict(value)
        return out
    if isinstance(obj, Mapping):
        return {k: _asdict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_asdict(v) for v in obj)
    return obj


def _normalize(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _normalize(_asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): _normalize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_normalize(v) for v in obj]
    if isinstance(obj, float):
        if math.isnan(obj) or math.isinf(obj):
            return str(obj)
        return float(repr(obj)) if obj != int(obj) else obj
    return obj


def canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, tuples as lists."""
    return json.dumps(_normalize(obj), sort_keys=True, separators=(",", ":"))


def config_hash(obj: Any, length: int = 16) -> str:
    """A stable hex id of a config (or any JSON-able structure of configs)."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def describe(cls: type) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, help) for every field, for ``splitbench list --verbose``."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        out.append((f.name, _type_name(hints[f.name]), default, f.metadata.get("help", "")))
    return out
