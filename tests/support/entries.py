"""A finished tiny run packed as an entry (module-scoped fixtures ``built`` and ``entry``) and the helpers the entry
tests share: copying, editing and hashing entry files, and drawing a verify seed that samples a given cell."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from benchmark.core.registry import DEFENSES, load_plugin
from leaderboard.entry import check_run
from leaderboard.submission import submit
from leaderboard.verification import choose_cells
from tests.support.helpers import run_pinned
from tests.support.suites import tiny

SUITE = tiny(name="entrytest", description="a tiny suite for the entry tests", release_draws=None,
             defenses=[{"name": "no_pruning"}, {"name": "entry_test_noise", "knob": [0.5]}])

PLUGIN = textwrap.dedent('''
    """A noise defense that ships outside splitbench, as a submitter's plugin file would."""
    import dataclasses

    import torch

    from benchmark import Defense, DefenseConfig, MethodCard, register_defense
    from benchmark.core.fields import field
    from benchmark.api.contract import train_task


    @dataclasses.dataclass(frozen=True)
    class EntryNoiseConfig(DefenseConfig):
        sigma: float = field(0.5, "std of the noise, relative to the activations' std")


    @register_defense("entry_test_noise")
    class EntryTestNoise(Defense):
        Config = EntryNoiseConfig
        knob = "sigma"
        stochastic_release = True
        card = MethodCard(paper="A. Author, Noise, 2024", year=2024, url="https://example.org/noise",
                          threat_model="a curious server", knob="sigma: more noise hides more", inferred=())

        def release(self, x):
            z = self.client(x)
            return z + self.config.sigma * z.detach().std() * torch.randn_like(z)

        def fit(self, data, trainer):
            train_task(self, data, trainer, self.release, [self.client, self.server], "entry_test_noise")
''')

CARD = {
    "schema_version": 1,
    "name": "Gaussian noise on activations",
    "authors": ["A. Author", "B. Author"],
    "paper": "A. Author, Noise, 2024",
    "code_url": "https://example.org/noise",
    "license": "MIT",
    "hardware": "2-core x86 CPU",
    "contact": "a.author@example.org",
    "defense": "entry_test_noise",
    "code": {"plugin": ["entry_noise.py"]},
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One finished tiny run of the reference and a plugin defense (4 cells), with its plugin file and card."""
    root = tmp_path_factory.mktemp("entries")
    plugin = root / "entry_noise.py"
    plugin.write_text(PLUGIN)
    (root / "entrytest.yaml").write_text(SUITE)
    load_plugin(plugin)
    summary = run_pinned(str(root / "entrytest.yaml"), out=root / "run", progress=False, latency_repeats=2)
    assert (summary.ok, summary.failed) == (4, 0)
    card = write_card(root / "card.yaml")
    yield {"root": root, "run": root / "run", "plugin": plugin, "card": card}
    DEFENSES.unregister("entry_test_noise")
    for name in [n for n, m in sys.modules.items() if getattr(m, "__file__", None) == str(plugin)]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def entry(built):
    return submit(built["run"], built["card"], built["root"] / "submitted" / "noise", plugins=[built["plugin"]])


def write_card(path: Path, **changes) -> Path:
    card = {k: v for k, v in {**CARD, **changes}.items() if v is not None}
    path.write_text(yaml.safe_dump(card, sort_keys=False))
    return path


def copy_run(built, dst: Path) -> Path:
    shutil.copytree(built["run"], dst, ignore=shutil.ignore_patterns("cache"))
    return dst


def copy_entry(entry: Path, dst: Path) -> Path:
    shutil.copytree(entry, dst)
    (dst / "verification.json").unlink(missing_ok=True)
    return dst


def records_of(run: Path) -> list[Path]:
    return sorted((run / "records").glob("*.json"))


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def seed_drawing(entry: Path, defense: str, attack: str = "attribute_inference") -> int:
    """A --seed whose one drawn cell is ``defense`` attacked by ``attack``."""
    contents = check_run(entry / "run")
    card = yaml.safe_load((entry / "entry.yaml").read_text())
    for seed in range(100):
        (_, rec, _), *_ = choose_cells(contents, 1, seed, card["defense"])
        if (rec["config"]["defense"]["name"], rec["config"]["attack"]["name"]) == (defense, attack):
            return seed
    raise AssertionError(f"no seed draws {defense} attacked by {attack}")


# -- submit -----------------------------------------------------------------------------------------------------
