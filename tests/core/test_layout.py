"""The harness in layer folders: old module paths still import (with a warning) for plugins written against the flat
layout, and no file of the project uses them any more."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from benchmark._moved import MOVED

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("benchmark", "leaderboard", "defenses", "attacks", "baselines", "tests")

OLD_README_PLUGIN = textwrap.dedent('''
    import dataclasses

    import torch

    from benchmark import Defense, DefenseConfig, MethodCard, register_defense
    from benchmark.config import field
    from benchmark.interfaces import train_task

    @dataclasses.dataclass(frozen=True)
    class OldNoiseConfig(DefenseConfig):
        sigma: float = field(0.5, "std of the Gaussian noise added to the activations")

    @register_defense("old_style_noise")
    class OldStyleNoise(Defense):
        Config = OldNoiseConfig
        knob = "sigma"
        stochastic_release = True
        card = MethodCard(paper="...", year=2024, url="https://...", threat_model="...", knob="sigma",
                          inferred=("...",))

        def release(self, x):
            z = self.client(x)
            return z + self.config.sigma * z.detach().std() * torch.randn_like(z)

        def fit(self, data, trainer):
            train_task(self, data, trainer, self.release, [self.client, self.server], "old_style_noise")
''')


def test_a_plugin_written_against_the_flat_layout_still_registers_and_is_told_where_names_went(tmp_path):
    """The plugin example of the previous README, loaded in a fresh interpreter: it registers and trains-ready,
    and each old path it imports gives one DeprecationWarning naming the new one."""
    plugin = tmp_path / "old_style.py"
    plugin.write_text(OLD_README_PLUGIN)
    code = ("import warnings; warnings.simplefilter('always')\n"
            "from benchmark.core.registry import DEFENSES, load_plugin\n"
            f"load_plugin({str(plugin)!r})\n"
            "from benchmark.api import Defense\n"
            "cls = DEFENSES.get('old_style_noise')\n"
            "print('registered', issubclass(cls, Defense), cls.knob)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "registered True sigma" in proc.stdout
    assert "benchmark.config moved to benchmark.core.fields" in proc.stderr
    assert "benchmark.interfaces moved to benchmark.api.contract" in proc.stderr
    assert "old_style.py" in proc.stderr  # the warning points at the plugin's own import line


@pytest.mark.parametrize("old", sorted(MOVED))
def test_every_old_path_is_the_module_that_now_holds_it(old):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert importlib.import_module(old) is importlib.import_module(MOVED[old])
    assert importlib.import_module(MOVED[old]).__spec__.name == MOVED[old]  # its own identity is untouched


def test_old_module_names_as_attributes_of_the_package(monkeypatch):
    import benchmark
    from benchmark.core import registry

    # as in a fresh interpreter: no earlier import of the old path left its name behind
    monkeypatch.delitem(sys.modules, "benchmark.registry", raising=False)
    monkeypatch.delattr(benchmark, "registry", raising=False)

    with pytest.warns(DeprecationWarning, match="benchmark.registry moved to benchmark.core.registry"):
        assert benchmark.registry is registry
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        benchmark.nonexistent  # noqa: B018


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def test_no_file_of_the_project_imports_an_old_path():
    here = Path(__file__).resolve()
    found = [f"{p.relative_to(ROOT)}:{line}: {name}"
             for top in PROJECT for p in sorted((ROOT / top).rglob("*.py")) if p.resolve() != here
             for line, name in _imported_modules(p) if name in MOVED]
    assert not found, "imports of moved modules:\n" + "\n".join(found)


def test_the_package_tree_names_its_layers():
    """Each layer folder says in its docstring what it holds; nothing is left flat in benchmark/ but the CLI, the
    package's public names and the old-path finder."""
    flat = sorted(p.name for p in (ROOT / "benchmark").glob("*.py"))
    assert flat == ["__init__.py", "__main__.py", "_moved.py", "cli.py"]
    for layer in ("core", "data", "models", "api", "kit", "measure", "suites", "store", "engine"):
        doc = importlib.import_module(f"benchmark.{layer}").__doc__
        assert doc and len(doc.split()) > 5, layer


def test_no_module_imports_another_modules_private_names():
    """A name with a leading underscore is its module's own; what another module needs is made public, so a reader
    can see each module's interface from its names (tests may reach in; the old-path finder is the package's own)."""
    found = []
    for top in PROJECT[:-1]:
        for p in sorted((ROOT / top).rglob("*.py")):
            for node in ast.walk(ast.parse(p.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module != "__future__":
                    found += [f"{p.relative_to(ROOT)}:{node.lineno}: {node.module}.{a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__") and a.name != "_moved"]
    assert not found, "private names imported from another module:\n" + "\n".join(found)


def test_importing_the_package_imports_no_torch_and_every_public_name_resolves():
    """``import benchmark`` (every ``splitbench`` command's first step) stays light: the public names are imported on
    first use, and building the command line's parser imports none, so the run command can start its worker processes'
    imports before this process imports torch."""
    import subprocess
    import sys

    code = ("import sys, benchmark, benchmark.cli; benchmark.cli._parser(); "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "missing = [n for n in benchmark.__all__ if getattr(benchmark, n, None) is None]; "
            "assert not missing, missing; assert sorted(benchmark.__all__) == sorted(benchmark._PUBLIC); "
            "assert set(benchmark.__all__) <= set(dir(benchmark)); "
            "from benchmark import Trainer, run; from benchmark.models.trainer import Trainer as T; "
            "assert Trainer is T")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
