"""Leaderboard entries: a card, one finished run, the defense's code and checksums, packed into one folder.

An entry folder holds exactly::

    entry.yaml          the card, validated against leaderboard/schema/entry-v<schema_version>.json
    run/manifests/ID.json   the one manifest that was submitted (run/run.json is the same file)
    run/records/*.json  every record the manifest names, with the .npz / .png files they reference
    plugin/*.py         the plugin file(s), when the defense comes from a plugin
    checksums.json      {"algorithm": "sha256", "files": {path relative to the entry: sha256}} of all of the above
    verification.json   written by ``splitbench verify --report``: one result per verifying machine (not
                        checksummed: it is a report about the entry)

:func:`submit` validates a run directory and a card and packs them, building the folder beside ``--out`` and
renaming it into place, so a failed submit leaves nothing behind. :func:`check_entry` is the integrity half of
``splitbench verify`` (checksums, card, records, layout); :mod:`leaderboard.verification` re-runs cells. An entry of
the ``standard`` suite (or its CPU twin ``standard-cpu``) are official; entries of any other suite are accepted
and shown apart (:func:`is_official`).

Example:
    >>> from leaderboard.entry import submit, is_official
    >>> entry = submit("runs/quick", "entry.yaml", "leaderboard/entries/my-defense",
    ...                plugins=["my_defense.py"])                       # doctest: +SKIP
    >>> is_official(entry)                                              # doctest: +SKIP
    False
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata, resources
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import yaml

from benchmark.core.errors import SplitbenchError, did_you_mean
from benchmark.core.fields import config_hash
from benchmark.core.io import atomic_write_text, sha256_file
from benchmark.store.manifest import load_manifest
from benchmark.store.records import read_outcomes, read_record

CARD_VERSION = 1
#: suites whose entries are official: the leaderboard's GPU-sized tracks and their CPU-sized twin (the same
#: protocol and scenario on tiny test backbones; its tracks are its own, so the two never share a table)
OFFICIAL_SUITES = ("standard", "standard-cpu")
CARD_FILE = "entry.yaml"
CHECKSUMS_FILE = "checksums.json"
VERIFICATION_FILE = "verification.json"
RUN_DIR = "run"
PLUGIN_DIR = "plugin"
#: The card's keys in the order ``entry.yaml`` is written.
CARD_KEYS = ("schema_version", "name", "authors", "paper", "code_url", "license", "hardware", "contact", "defense",
             "code", "suite")
_TOP_LEVEL = {CARD_FILE, CHECKSUMS_FILE, VERIFICATION_FILE, RUN_DIR, PLUGIN_DIR}
_TYPE_WORDS = {"string": "a string", "array": "a list", "object": "a mapping", "integer": "an integer",
               "number": "a number", "boolean": "true or false"}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


# -- the card ---------------------------------------------------------------------------------------------------
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
    card = _load_yaml(Path(path))
    validate_card(card, str(path))
    return card


def _load_yaml(path: Path) -> Any:
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
        return f"key {key!r} must be {_TYPE_WORDS.get(err.validator_value, err.validator_value)} ({expected}), " \
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


# -- checksums --------------------------------------------------------------------------------------------------
def _files_under(root: Path) -> list[str]:
    """Every file below ``root`` as a POSIX path relative to it; links are refused (an entry holds plain files)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                raise SplitbenchError(f"{p}: is a symbolic link; an entry holds plain files only")
        out += [Path(dirpath, f).relative_to(root).as_posix() for f in filenames]
    return sorted(out)


def write_checksums(root: Path) -> dict[str, str]:
    """Hash every file of the entry but the checksum file and the verification report; write ``checksums.json``."""
    files = {rel: sha256_file(root / rel) for rel in _files_under(root) if rel not in (CHECKSUMS_FILE,
                                                                                         VERIFICATION_FILE)}
    atomic_write_text(root / CHECKSUMS_FILE, json.dumps({"algorithm": "sha256", "files": files}, indent=2) + "\n")
    return files


def check_checksums(root: Path) -> dict[str, str]:
    """Every file listed in ``checksums.json`` exists and matches; every file of the entry is listed."""
    path = root / CHECKSUMS_FILE
    if not path.is_file():
        raise SplitbenchError(f"{path}: missing (an entry lists the sha256 of each of its files there)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SplitbenchError(f"{path}: not readable JSON ({exc})") from exc
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("algorithm") != "sha256" or not isinstance(files, dict):
        raise SplitbenchError(f"{path}: expected {{\"algorithm\": \"sha256\", \"files\": {{PATH: SHA256}}}}")
    for rel, digest in files.items():
        parts = PurePosixPath(rel).parts
        if (PurePosixPath(rel).is_absolute() or ".." in parts or "\\" in rel or rel in (CHECKSUMS_FILE,
                                                                                          VERIFICATION_FILE)
                or not isinstance(digest, str) or not _HEX64.match(digest)):
            raise SplitbenchError(f"{path}: entry {rel!r}: expected a path inside the entry and a sha256 hex digest")
        f = root / rel
        if not f.is_file():
            raise SplitbenchError(f"{f}: missing (listed in {CHECKSUMS_FILE})")
        if sha256_file(f) != digest:
            raise SplitbenchError(f"{f}: sha256 does not match {CHECKSUMS_FILE} (the file was changed after submit)")
    extra = [rel for rel in _files_under(root) if rel not in files and rel not in (CHECKSUMS_FILE,
                                                                                    VERIFICATION_FILE)]
    if extra:
        raise SplitbenchError(f"{root / extra[0]}: not listed in {CHECKSUMS_FILE} (an entry holds only the files "
                              "`splitbench submit` packed)")
    return files


# -- the run ----------------------------------------------------------------------------------------------------
def track_of(rec: Mapping[str, Any]) -> tuple[str, str, str, int]:
    """(scenario, backbone, split, seed) of a record: the rows paired Δutility compares."""
    cfg = rec["config"]
    return cfg["scenario"]["name"], cfg["backbone"]["name"], cfg["backbone"]["split"], cfg["seed"]


@dataclasses.dataclass
class RunContents:
    """One manifest of a run directory with its records, all checked."""

    run_dir: Path
    manifest: dict[str, Any]
    manifest_path: Path
    records: list[tuple[Path, dict[str, Any]]]

    @property
    def suite(self) -> str:
        return str(self.manifest["suite"])

    @property
    def reference(self) -> str:
        return str(self.manifest["presentation"].get("reference"))

    @property
    def defenses(self) -> list[str]:
        return sorted({rec["config"]["defense"]["name"] for _, rec in self.records})

    def sidecars(self, rec: Mapping[str, Any]) -> list[str]:
        """The file names of the outcomes and gallery files a record references."""
        return [rec[k]["file"] for k in ("outcomes", "gallery") if isinstance(rec.get(k), dict)]


def check_run(run_dir: Path, manifest_id: str | None = None) -> RunContents:
    """Check that the manifest of ``run_dir`` (its latest unless ``manifest_id``) describes a finished run that can be
    submitted: every cell recorded and finished, every record and per-sample file intact, one code version, the cells
    of the reference defense that paired Δutility needs, and the resolved suite for re-running any cell."""
    run_dir = Path(run_dir)
    man = load_manifest(run_dir, manifest_id)
    mid = man["manifest_id"]
    mpath = run_dir / "manifests" / f"{mid}.json"
    resolved = man.get("resolved_suite")
    if not isinstance(resolved, dict):
        raise SplitbenchError(f"{mpath}: the manifest has no resolved suite, so its cells cannot be re-run (rerun the "
                              "same `splitbench run` command with this splitbench: it recomputes nothing)")
    if resolved.get("name") != man["suite"]:
        raise SplitbenchError(f"{mpath}: the resolved suite is named {resolved.get('name')!r}, the manifest's suite "
                              f"{man['suite']!r}")
    records = []
    first: tuple[Path, tuple[Any, Any]] | None = None
    for name in man["cells"]:
        path = run_dir / "records" / name
        if Path(name).name != name or not name.endswith(".json"):
            raise SplitbenchError(f"{mpath}: cell {name!r} is not a record file name")
        if not path.is_file():
            raise SplitbenchError(f"{path}: record named by manifest {mid} is missing (the run has not finished; "
                                  "rerun `splitbench run` with the same settings)")
        rec = read_record(path)
        _check_identity(path, rec, man["suite"], mid)
        if rec["status"] == "failed":
            reason = " ".join(str(rec.get("reason") or "no reason recorded").split())[:200]
            raise SplitbenchError(f"{path}: the cell failed ({reason}); an entry holds only finished cells (rerun "
                                  "`splitbench run` to retry it)")
        if rec["status"] == "ok" or rec.get("outcomes"):
            _check_file_ref(path, rec, "outcomes")
            read_outcomes(path, rec)
        if rec.get("gallery"):
            _check_file_ref(path, rec, "gallery")
            png = path.parent / rec["gallery"]["file"]
            if not png.is_file():
                raise SplitbenchError(f"{png}: gallery image is missing (named by {path.name})")
            if sha256_file(png) != rec["gallery"].get("sha256"):
                raise SplitbenchError(f"{png}: checksum does not match the one in {path.name} (the image was "
                                      "changed or swapped)")
        env = rec["env"] if isinstance(rec["env"], dict) else {}
        # every record names the code that wrote it (read when it was written), so a run whose code changed midway
        # (a commit, or uncommitted edits made or undone) shows two versions here
        version = (env.get("package_version"), env.get("git_commit"), env.get("git_dirty"))
        if first is None:
            first = (path, version)
        elif version != first[1]:
            raise SplitbenchError(f"{path}: made by {_code_version(version)}, but {first[0].name} by "
                                  f"{_code_version(first[1])}; an entry's records must all come from one code version "
                                  "(the code changed during the run: rerun it with one version)")
        records.append((path, rec))
    if not records:
        raise SplitbenchError(f"{mpath}: the manifest names no cells")
    contents = RunContents(run_dir, man, mpath, records)
    _check_reference(contents)
    return contents


def _code_version(version: tuple[Any, Any, Any]) -> str:
    package, commit, dirty = version
    return f"splitbench {package} (commit {commit}{' with uncommitted changes' if dirty else ''})"


def _check_identity(path: Path, rec: Mapping[str, Any], suite: str, mid: str) -> None:
    """The record is the cell its file name says, of the manifest's suite, with an unedited config."""
    cfg = rec["config"]
    try:
        d = copy.deepcopy(cfg)
        d.pop("suite")
        d["attack"].pop("label")
        digest = config_hash(d, 16)
        record_suite = cfg["suite"]
        _ = track_of(rec), cfg["defense"]["name"]  # the fields the checks below and the leaderboard group by
    except (KeyError, TypeError, AttributeError) as exc:
        raise SplitbenchError(f"{path}: the record's config lacks {exc} (not a record of `splitbench run`)") from exc
    if record_suite != suite:
        raise SplitbenchError(f"{path}: record of suite {record_suite!r}, not of the manifest's suite {suite!r} "
                              f"(manifest {mid}); an entry holds the records of one suite")
    if rec["config_hash"] != digest or rec["cell_id"] != path.stem or not path.stem.endswith(digest[:10]):
        raise SplitbenchError(f"{path}: the record's config does not hash to its config_hash and file name (the "
                              "record was edited or renamed)")


def _check_file_ref(path: Path, rec: Mapping[str, Any], key: str) -> None:
    ref = rec.get(key)
    if not isinstance(ref, dict) or not isinstance(ref.get("file"), str) or Path(ref["file"]).name != ref["file"] \
            or ref["file"] in ("", ".", ".."):
        raise SplitbenchError(f"{path}: {key!r} must name a file beside the record and its sha256")


def _check_reference(contents: RunContents) -> None:
    """Every (track, seed) of the run has a finished cell of the reference defense (paired Δutility needs its
    per-sample utility)."""
    ref = contents.reference
    have = {track_of(rec) for _, rec in contents.records
            if rec["config"]["defense"]["name"] == ref and rec["status"] in ("ok", "not_applicable")}
    for _, rec in contents.records:
        key = track_of(rec)
        if key not in have:
            scenario, backbone, split, seed = key
            raise SplitbenchError(f"{contents.manifest_path}: no finished cell of the reference defense {ref!r} for "
                                  f"{scenario} · {backbone}@{split}, seed {seed} (paired Δutility needs it; run the "
                                  "reference in the same run)")


# -- the defense's code -----------------------------------------------------------------------------------------
def provide_plugin(path: Path) -> ModuleType:
    """The module of a plugin file: an already imported module with the same bytes whose methods are still
    registered, else the file imported now (:func:`benchmark.core.registry.load_plugin`)."""
    from benchmark.core.registry import load_plugin

    path = Path(path)
    if not path.is_file():
        raise SplitbenchError(f"plugin file {str(path)!r} does not exist (expected a .py file that registers methods)")
    digest = sha256_file(path)
    for mod in _plugin_modules():
        if sha256_file(Path(mod.__file__)) == digest and _still_registered(mod):
            return mod
    load_plugin(path)
    for mod in _plugin_modules():
        if Path(mod.__file__).resolve() == path.resolve():
            if not _still_registered(mod):
                break
            return mod
    raise SplitbenchError(f"plugin file {str(path)!r}: imported before, but what it registered has been removed "
                          "(start a fresh process)")


def _plugin_modules() -> list[ModuleType]:
    return [m for name, m in list(sys.modules.items()) if name.startswith("splitbench_plugin_")
            and isinstance(getattr(m, "__file__", None), str) and Path(m.__file__).is_file()]


def _still_registered(mod: ModuleType) -> bool:
    from benchmark.core.registry import ATTACKS, DEFENSES

    for obj in list(vars(mod).values()):
        if isinstance(obj, type) and obj.__module__ == mod.__name__ and "name" in vars(obj):
            if not any(obj.name in reg and reg.get(obj.name) is obj for reg in (DEFENSES, ATTACKS)):
                return False
    return True


def check_code(card: Mapping[str, Any], plugins: Sequence[str | Path], where: str) -> list[Path]:
    """Make the card's defense available and check it comes from where ``code`` says; return the plugin files.

    ``{plugin: [...]}``: the files given are exactly the ones listed and one of them registers the defense;
    ``{package, version, entry_point}``: that version is installed and its entry point is the defense;
    ``{builtin: true}``: the defense ships with splitbench.
    """
    from benchmark.core.registry import BUILTIN_PACKAGES, DEFENSES, load_all

    load_all()
    code, name = card["code"], card["defense"]
    paths = [Path(p) for p in plugins]
    given = [p.name for p in paths]
    if "plugin" in code:
        if sorted(given) != sorted(code["plugin"]) or len(set(given)) != len(given):
            raise SplitbenchError(f"{where}: code.plugin lists {code['plugin']}, but the plugin files given are "
                                  f"{given or 'none'} (give each listed file once, with --plugin)")
        modules = [provide_plugin(p) for p in paths]
        if name not in DEFENSES:
            raise SplitbenchError(f"{where}: defense {name!r} is not registered by the plugin file(s) {given}"
                                  f"{did_you_mean(name, DEFENSES.names())}")
        if sys.modules.get(DEFENSES.get(name).__module__) not in modules:
            raise SplitbenchError(f"{where}: defense {name!r} is registered by {DEFENSES.get(name).__module__}, not "
                                  f"by the plugin file(s) {given}")
        return paths
    if paths:
        raise SplitbenchError(f"{where}: plugin files were given, but code is not {{plugin: [...]}} (list them "
                              "under code.plugin)")
    if name not in DEFENSES:
        raise SplitbenchError(f"{where}: unknown defense {name!r}{did_you_mean(name, DEFENSES.names())}")
    module = DEFENSES.get(name).__module__
    if "package" in code:
        _check_package(code, name, module, where)
    elif module.split(".")[0] not in BUILTIN_PACKAGES:
        raise SplitbenchError(f"{where}: defense {name!r} does not ship with splitbench (it comes from {module}); set "
                              "code to {plugin: [FILE.py]} or {package: NAME, version: X, entry_point: NAME}")
    return []


def _normalized(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _check_package(code: Mapping[str, str], name: str, module: str, where: str) -> None:
    from benchmark.core.registry import DEFENSES, ENTRY_POINT_GROUPS

    pkg, version, ep_name = code["package"], code["version"], code["entry_point"]
    try:
        installed = metadata.version(pkg)
    except metadata.PackageNotFoundError as exc:
        raise SplitbenchError(f"{where}: package {pkg!r} is not installed (install {pkg}=={version})") from exc
    if installed != version:
        raise SplitbenchError(f"{where}: package {pkg} {installed} is installed, but the card names version {version} "
                              f"(install {pkg}=={version})")
    group = ENTRY_POINT_GROUPS["defense"]
    eps = [ep for ep in metadata.entry_points(group=group) if ep.name == ep_name
           and getattr(ep, "dist", None) is not None and _normalized(ep.dist.name) == _normalized(pkg)]
    if not eps:
        raise SplitbenchError(f"{where}: package {pkg} declares no entry point {ep_name!r} in the group {group}")
    obj = eps[0].load()
    cls = DEFENSES.get(name)
    ok = obj is cls if isinstance(obj, type) else (module == obj.__name__ or module.startswith(obj.__name__ + "."))
    if not ok:
        raise SplitbenchError(f"{where}: defense {name!r} is not the one entry point {ep_name!r} of {pkg} registers")


def parse_resolved_suite(contents: RunContents):
    """The suite as it was run, read back from the manifest (every method it names must be registered)."""
    from benchmark.suites.parse import parse_suite

    return parse_suite(copy.deepcopy(contents.manifest["resolved_suite"]), str(contents.manifest_path))


# -- submit -----------------------------------------------------------------------------------------------------
def submit(run_dir: str | Path, card_path: str | Path, out: str | Path, plugins: Sequence[str | Path] = ()) -> Path:
    """Validate a finished run, its card and the defense's code, and pack them into the entry folder ``out``.

    The card's ``suite`` is filled in from the run (a card that names another suite is refused). The folder is
    built beside ``out`` and renamed into place, so a failed submit leaves no half-written entry; an existing
    ``out`` is never overwritten.

    Returns:
        The entry folder.
    """
    out, card_path = Path(out), Path(card_path)
    if out.exists() or out.is_symlink():
        raise SplitbenchError(f"{out}: already exists; submit never overwrites an entry (choose another --out, or "
                              "remove the old entry first)")
    card = _load_yaml(card_path)
    if not isinstance(card, dict):
        raise SplitbenchError(f"{card_path}: the card must be a YAML mapping with the keys "
                              f"{', '.join(CARD_KEYS[:-1])}")
    contents = check_run(Path(run_dir))
    if "suite" in card and card["suite"] != contents.suite:
        raise SplitbenchError(f"{card_path}: key 'suite' is {card['suite']!r}, but the run is of suite "
                              f"{contents.suite!r} (leave it out: submit fills it in)")
    card = {**card, "suite": contents.suite}
    validate_card(card, str(card_path))
    if card["defense"] not in contents.defenses:
        raise SplitbenchError(f"{card_path}: defense {card['defense']!r} is not run in {contents.manifest_path} "
                              f"(it runs {', '.join(contents.defenses)})")
    plugin_paths = check_code(card, plugins, str(card_path))
    parse_resolved_suite(contents)  # every cell can be re-run from the entry alone
    tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as exc:
        raise SplitbenchError(f"{out}: could not be written ({exc.strerror or exc})") from exc
    try:
        _pack(tmp, card, contents, plugin_paths)
        check_entry(tmp)  # what was copied is what was checked
        if out.exists():
            raise SplitbenchError(f"{out}: appeared while the entry was being packed; not overwritten")
        os.rename(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SplitbenchError(f"{out}: could not be written ({exc.strerror or exc}); nothing was left behind") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _pack(root: Path, card: Mapping[str, Any], contents: RunContents, plugins: Sequence[Path]) -> None:
    write_card(root / CARD_FILE, card)
    run = root / RUN_DIR
    (run / "manifests").mkdir(parents=True)
    (run / "records").mkdir()
    manifest = contents.manifest_path.read_bytes()
    (run / "manifests" / contents.manifest_path.name).write_bytes(manifest)
    (run / "run.json").write_bytes(manifest)
    for path, rec in contents.records:
        for name in [path.name] + contents.sidecars(rec):
            shutil.copyfile(path.parent / name, run / "records" / name)
    if plugins:
        (root / PLUGIN_DIR).mkdir()
        for p in plugins:
            shutil.copyfile(p, root / PLUGIN_DIR / p.name)
    write_checksums(root)


# -- the integrity half of verify -------------------------------------------------------------------------------
def check_entry(entry: str | Path) -> tuple[dict[str, Any], RunContents]:
    """Check an entry folder without running anything: checksums, card, layout, and every record and per-sample file
    of its manifest. Returns the card and the run's contents."""
    entry = Path(entry)
    if not entry.is_dir() or not (entry / CARD_FILE).is_file():
        raise SplitbenchError(f"{entry}: not an entry folder (expected {CARD_FILE}, {RUN_DIR}/ and {CHECKSUMS_FILE}, "
                              "as written by `splitbench submit`)")
    check_checksums(entry)
    card = read_card(entry / CARD_FILE)
    for item in sorted(entry.iterdir()):
        if item.name not in _TOP_LEVEL:
            raise SplitbenchError(f"{item}: not part of an entry (expected only {', '.join(sorted(_TOP_LEVEL))})")
    run = entry / RUN_DIR
    manifests = sorted((run / "manifests").glob("*.json"))
    if len(manifests) != 1:
        raise SplitbenchError(f"{run / 'manifests'}: an entry holds exactly one manifest, found {len(manifests)}")
    contents = check_run(run)
    for item in sorted(run.iterdir()):
        if item.name not in ("manifests", "records", "run.json"):
            raise SplitbenchError(f"{item}: not part of an entry's run (expected manifests/, records/, run.json)")
    run_json = run / "run.json"
    if not run_json.is_file() or run_json.read_bytes() != contents.manifest_path.read_bytes():
        raise SplitbenchError(f"{run_json}: must be a copy of {contents.manifest_path.name}")
    expected = {name for path, rec in contents.records for name in [path.name] + contents.sidecars(rec)}
    for item in sorted((run / "records").iterdir()):
        if item.name not in expected:
            raise SplitbenchError(f"{item}: not named by manifest {contents.manifest['manifest_id']} (an entry holds "
                                  "only the submitted run's files)")
    if card["suite"] != contents.suite:
        raise SplitbenchError(f"{entry / CARD_FILE}: key 'suite' is {card['suite']!r}, but the run is of suite "
                              f"{contents.suite!r}")
    if card["defense"] not in contents.defenses:
        raise SplitbenchError(f"{entry / CARD_FILE}: defense {card['defense']!r} is not run in the entry (it runs "
                              f"{', '.join(contents.defenses)})")
    listed = sorted(card["code"].get("plugin", []))
    folder = entry / PLUGIN_DIR
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    if present != listed:
        raise SplitbenchError(f"{folder}: holds {present or 'nothing'}, but the card's code.plugin lists "
                              f"{listed or 'nothing'}")
    return card, contents


def entry_plugins(entry: str | Path, card: Mapping[str, Any]) -> list[Path]:
    """The entry's own plugin files, in the card's order."""
    return [Path(entry) / PLUGIN_DIR / name for name in card["code"].get("plugin", [])]
