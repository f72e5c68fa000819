"""The entry card (``entry.yaml``): its JSON schema, reading and validating it with one-line errors, writing it, and
whether the entry is official."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from benchmark.core.errors import SplitbenchError, did_you_mean
from benchmark.core.io import atomic_write_text
from benchmark.store.manifest import load_manifest
from leaderboard.entry.layout import CARD_FILE, CARD_KEYS, CARD_VERSION, OFFICIAL_SUITES, RUN_DIR, TYPE_WORDS


def schema_versions() -> list[int]:
    """The card schema versions this splitbench reads (one JSON Schema file per version)."""
    folder = resources.files("leaderboard") / "schema"
    found = []
    for item in folder.iterdir():
        m = re.fullmatch(r"entry-v(\d+)\.json", item.name)
        if m:
            found.append(int(m.group(1)))
    return sorted(found)


def card_schema(version: int = CARD_VERSION) -> dict[str, Any]:
    """The JSON Schema of card version ``version``."""
    return json.loads((resources.files("leaderboard") / "schema" / f"entry-v{version}.json").read_text())


def read_card(path: str | Path) -> dict[str, Any]:
    """Read and validate a card file (YAML, read with ``safe_load``)."""
    card = load_yaml(Path(path))
    validate_card(card, str(path))
    return card


def load_yaml(path: Path) -> Any:
    if not path.is_file():
        raise SplitbenchError(f"{path}: card file does not exist (expected a YAML file with the keys "
                              f"{', '.join(CARD_KEYS[:-1])})")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = " ".join(str(exc).split())
        raise SplitbenchError(f"{path}: not a readable YAML card ({reason})") from exc


def validate_card(card: Any, where: str) -> None:
    """Check a card against the schema of its ``schema_version``; the first problem is one line naming the key.

    Unknown keys, missing keys and wrong types are all refused, so a typo never passes as an empty field.
    """
    from jsonschema import Draft202012Validator

    if not isinstance(card, dict):
        raise SplitbenchError(f"{where}: the card must be a YAML mapping with the keys {', '.join(CARD_KEYS)}")
    if "schema_version" not in card:
        raise SplitbenchError(f"{where}: missing key 'schema_version' (expected {CARD_VERSION})")
    version = card["schema_version"]
    known = schema_versions()
    if isinstance(version, bool) or version not in known:
        raise SplitbenchError(f"{where}: schema_version {version!r} is not supported (expected one of "
                              f"{', '.join(map(str, known))})")
    schema = card_schema(version)
    errors = list(Draft202012Validator(schema).iter_errors(card))
    if errors:
        raise SplitbenchError(f"{where}: {_describe(_first(errors), schema)}")


def _first(errors: Iterable[Any]) -> Any:
    """The error to report: the shallowest, an unknown key before a missing one before a bad value."""
    order = {"additionalProperties": 0, "required": 1}
    return min(errors, key=lambda e: (len(e.absolute_path), order.get(e.validator, 2), [str(p) for p in
                                                                                         e.absolute_path]))


def _dotted(path: Sequence[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _show(value: Any) -> str:
    text = repr(value)
    return (text if len(text) <= 60 else text[:57] + "...") + f" ({type(value).__name__})"


def _description(schema: dict[str, Any], path: Sequence[Any]) -> str:
    """The ``description`` of the schema node at ``path`` (or of its closest ancestor that has one)."""
    node, desc = schema, schema.get("description", "")
    for part in path:
        if isinstance(part, int):
            node = node.get("items", {})
        else:
            props = dict(node.get("properties", {}))
            for branch in node.get("oneOf", []):
                props.update(branch.get("properties", {}))
            node = props.get(part, {})
        desc = node.get("description", desc)
    return desc


def _describe(err: Any, schema: dict[str, Any]) -> str:
    path = list(err.absolute_path)
    key = _dotted(path)
    if err.validator == "additionalProperties":
        allowed = list(err.schema.get("properties", {}))
        extra = sorted(str(k) for k in err.instance if k not in allowed)[0]
        return (f"unknown key {_dotted(path + [extra])!r}{did_you_mean(extra, allowed)} (valid keys"
                f"{' of ' + repr(key) if key else ''}: {', '.join(allowed)})")
    if err.validator == "required":
        missing = next(k for k in err.validator_value if k not in err.instance)
        return f"missing key {_dotted(path + [missing])!r} ({_description(schema, path + [missing])})"
    if err.validator == "oneOf":
        branches = err.validator_value
        if isinstance(err.instance, dict):
            for i, branch in enumerate(branches):
                if branch["required"][0] in err.instance:
                    sub = [e for e in err.context if e.relative_schema_path[0] == i]
                    if sub:
                        return _describe(_first(sub), schema)
        forms = "; or ".join(", ".join(b["required"]) for b in branches)
        return (f"key {key!r} must be a mapping with exactly the keys {forms} ({_description(schema, path)}), "
                f"got {_show(err.instance)}")
    expected = _description(schema, path)
    if err.validator == "type":
        return f"key {key!r} must be {TYPE_WORDS.get(err.validator_value, err.validator_value)} ({expected}), " \
               f"got {_show(err.instance)}"
    if err.validator == "const":
        return f"key {key!r} must be {json.dumps(err.validator_value)} ({expected}), got {_show(err.instance)}"
    if err.validator == "uniqueItems":
        return f"key {key!r} lists an item twice ({expected})"
    return f"key {key!r} is not valid: got {_show(err.instance)}, expected {expected}"


def write_card(path: Path, card: Mapping[str, Any]) -> None:
    """Write a card as ``entry.yaml`` with its keys in the documented order."""
    ordered = {k: card[k] for k in CARD_KEYS if k in card}
    atomic_write_text(path, yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True))


def is_official(entry: str | Path | Mapping[str, Any]) -> bool:
    """Whether an entry counts for the official leaderboard: its suite is ``standard`` or ``standard-cpu``.

    Args:
        entry: an entry folder (its card and its manifest must both name the suite) or an already read card.
    """
    if isinstance(entry, Mapping):
        return entry.get("suite") in OFFICIAL_SUITES
    folder = Path(entry)
    card = read_card(folder / CARD_FILE)
    return card["suite"] in OFFICIAL_SUITES and load_manifest(folder / RUN_DIR)["suite"] == card["suite"]
