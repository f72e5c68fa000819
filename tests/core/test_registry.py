"""The strict registry: duplicates raise, unknown names suggest, plugins and entry points register."""

from __future__ import annotations

import textwrap
from importlib import metadata

import pytest

from benchmark.core import registry
from benchmark.core.errors import SplitbenchError
from benchmark.core.registry import ATTACKS, DEFENSES, Registry


def test_duplicate_name_raises():
    r = Registry("thing")
    r.register("a", object())
    with pytest.raises(SplitbenchError, match="already registered"):
        r.register("a", object())


def test_unknown_name_suggests_closest():
    with pytest.raises(SplitbenchError, match=r"unknown defense 'random_prunning'; did you mean 'random_pruning'"):
        DEFENSES.get("random_prunning")


def test_unknown_name_without_close_match_lists_known():
    with pytest.raises(SplitbenchError, match=r"known: .*attribute_inference"):
        ATTACKS.get("zzzzzz")


def test_base_class_is_enforced():
    with pytest.raises(SplitbenchError, match="subclass of Defense"):
        DEFENSES.register("not_a_defense", int)


def test_names_are_filtered_by_pattern():
    assert DEFENSES.names("*pruning") == [n for n in DEFENSES.names() if n.endswith("pruning")]


PLUGIN = textwrap.dedent('''
    import dataclasses
    from benchmark import MethodCard, register_defense
    from benchmark.api.contract import Defense, DefenseConfig, train_task
    from benchmark.core.fields import field

    @dataclasses.dataclass(frozen=True)
    class Cfg(DefenseConfig):
        scale: float = field(1.0, "multiplies the activations")

    @register_defense("{name}")
    class Scaled(Defense):
        Config = Cfg
        knob = "scale"
        card = MethodCard(paper="a plugin", year=2024, url="https://example.org", threat_model="t", knob="scale",
                          inferred=())
        def release(self, x):
            return self.client(x) * self.config.scale
        def fit(self, data, trainer):
            train_task(self, data, trainer, self.release, [self.client, self.server], "scaled")
''')


def test_plugin_file_registers_a_defense(tmp_path):
    path = tmp_path / "my_plugin.py"
    path.write_text(PLUGIN.format(name="plugin_scaled"))
    try:
        registry.load_plugin(path)
        assert "plugin_scaled" in DEFENSES.names()
        assert DEFENSES.get("plugin_scaled").knob == "scale"
    finally:
        DEFENSES.unregister("plugin_scaled")


def test_plugin_errors_are_clear(tmp_path):
    with pytest.raises(SplitbenchError, match="does not exist"):
        registry.load_plugin(tmp_path / "missing.py")
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(SplitbenchError, match="failed to import: RuntimeError: boom"):
        registry.load_plugin(bad)


def test_entry_point_class_is_registered(tmp_path, monkeypatch):
    mod = tmp_path / "third_party_defense.py"
    mod.write_text(PLUGIN.format(name="ep_module_name").replace('@register_defense("ep_module_name")', ""))
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = metadata.EntryPoint(name="ep_scaled", value="third_party_defense:Scaled", group="splitbench.defenses")
    real = metadata.entry_points

    def fake(**kw):
        return [ep] if kw.get("group") == "splitbench.defenses" else real(**kw)

    monkeypatch.setattr(registry.metadata, "entry_points", fake)
    try:
        registry._load_entry_point("defense", ep)
        assert DEFENSES.get("ep_scaled").__name__ == "Scaled"
    finally:
        DEFENSES.unregister("ep_scaled")
