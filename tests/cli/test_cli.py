"""The splitbench command: help, listing, one-line errors with exit code 2, a run, the leaderboard."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from benchmark.cli import main
from tests.support.suites import tiny

TINY = tiny()


@pytest.fixture
def suite_file(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    return p


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "expected an error message"
    assert "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.mark.parametrize("cmd", [["--help"], ["run", "--help"], ["list", "--help"], ["leaderboard", "--help"]])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main(cmd)
    assert exc.value.code == 0
    assert "usage: splitbench" in capsys.readouterr().out


def test_list_everything(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("no_pruning", "random_pruning", "attribute_inference", "inversion_decoder", "digits", "quick"):
        assert name in out


def test_list_backbones_with_pattern(capsys):
    assert main(["list", "backbones", "resnet1*"]) == 0
    out = capsys.readouterr().out
    assert "resnet18" in out and "vit_tiny" not in out.split("\n", 1)[1]


def test_list_verbose_shows_config_fields(capsys):
    assert main(["list", "defenses", "random_pruning", "-v"]) == 0
    assert "prune_ratio (float, default 0.5)" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--defense", "nopruning"], "unknown defense 'nopruning'; did you mean 'no_pruning'"),
    (["--attack", "atribute_inference"], "unknown attack 'atribute_inference'; did you mean 'attribute_inference'"),
    (["--scenario", "cifar11"], "unknown scenario 'cifar11'; did you mean 'cifar10'"),
    (["--backbone", "resnet18@layer9"], "backbone 'resnet18' has no split point 'layer9'"),
    (["--backbone", "resnet1800"], "unknown backbone 'resnet1800'"),
    (["--scenario", "cifar10"], "cifar10 data not found"),
    (["--set", "train.epochz=2"], "unknown key 'epochz' for TrainConfig; did you mean 'epochs'?"),
    (["--scenario-arg", "image_size"], "expected KEY=VALUE"),
])
def test_bad_input_is_one_clear_line(args, message, suite_file, tmp_path, capsys):
    code = main(["run", "--suite", str(suite_file), "--out", str(tmp_path / "o"), "--quiet", *args])
    assert code == 2
    line = error_line(capsys)
    assert line.startswith("splitbench: error: ") and message in line


def test_misspelled_suite_key_names_file_and_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    text = TINY.replace("defenses:", "defences:")
    assert text != TINY
    bad.write_text(text)
    assert main(["run", "--suite", str(bad), "--out", str(tmp_path / "o")]) == 2
    line = error_line(capsys)
    assert str(bad) in line and "unknown key 'defences'" in line and "did you mean 'defenses'" in line


def test_misspelled_method_config_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(tiny(attacks=[{"name": "attribute_inference", "config": {"epocs": 1}},
                                 {"name": "inversion_decoder", "config": {"epochs": 1}}]))
    assert main(["run", "--suite", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "attacks[0].config: unknown key 'epocs'" in error_line(capsys)


def test_unknown_suite(capsys, tmp_path):
    assert main(["run", "--suite", "quik", "--out", str(tmp_path)]) == 2
    assert "unknown suite 'quik'; did you mean 'quick'?" in error_line(capsys)


def test_leaderboard_of_a_non_run_dir(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path)]) == 2
    assert "not a run directory" in error_line(capsys)


def test_run_then_leaderboard(suite_file, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", "--suite", str(suite_file), "--out", str(out), "--quiet", "--defense", "no_pruning",
                 "--attack", "attribute_inference"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "## digits · test_resnet @ layer1" in printed and "`no_pruning`" in printed
    assert (out / "leaderboard.md").is_file() and (out / "leaderboard.csv").is_file()
    assert main(["leaderboard", str(out), "--format", "csv", "--no-write"]) == 0
    csv = capsys.readouterr().out
    assert csv.startswith("scenario,backbone,split,") and "no_pruning" in csv


def test_console_script_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "benchmark", "list", "suites"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "quick" in proc.stdout


def test_failed_cells_give_exit_code_1(suite_file, tmp_path, capsys):
    plugin = tmp_path / "boom.py"
    plugin.write_text(textwrap.dedent('''
        import dataclasses
        from benchmark import MethodCard, register_attack
        from benchmark.core.fields import field
        from benchmark.api.contract import Attack, AttackKind

        @dataclasses.dataclass(frozen=True)
        class Cfg:
            x: int = field(0, "unused")

        @register_attack("cli_boom")
        class Boom(Attack):
            Config = Cfg
            kind = AttackKind.ATTRIBUTE
            card = MethodCard(paper="t", year=2024, url="https://example.org", threat_model="t", knob="k",
                              inferred=())
            def run(self, target, trainer):
                raise ValueError("boom")
    '''))
    from benchmark.core.registry import ATTACKS

    try:
        code = main(["run", "--suite", str(suite_file), "--out", str(tmp_path / "o"), "--quiet", "--plugin",
                     str(plugin), "--defense", "no_pruning", "--attack", "cli_boom", "--no-leaderboard"])
        assert code == 1
        assert "ValueError: boom" in capsys.readouterr().err
    finally:
        ATTACKS.unregister("cli_boom")


def test_set_values_are_read_as_yaml(suite_file, tmp_path):
    from benchmark.cli import _kv
    from benchmark.suites.narrow import apply_overrides
    from benchmark.suites.parse import load_suite

    over = _kv(["attack.inversion_decoder.max_aux=30", "train.lr=0.01", "defense.random_pruning.prune_ratio=0.25"],
               "--set")
    assert over == {"attack.inversion_decoder.max_aux": 30, "train.lr": 0.01,
                    "defense.random_pruning.prune_ratio": 0.25}
    suite = apply_overrides(load_suite(str(suite_file)), over)
    assert {d.name: d.config.train.lr for d in suite.defenses} == {"no_pruning": 0.01, "random_pruning": 0.01}
    assert [d.knob_value for d in suite.defenses if d.name == "random_pruning"] == [0.25]
    assert _kv(["models=[test_vit, test_resnet]"], "--set") == {"models": ["test_vit", "test_resnet"]}


def test_version_names_the_installed_package(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"splitbench {version('splitbench')}"


def test_a_closed_pipe_ends_the_listing_quietly():
    """`splitbench list defenses -v | head -n 1`: the reader leaves early; no BrokenPipeError traceback."""
    proc = subprocess.run(f"{sys.executable} -m benchmark list defenses -v | head -n 1", shell=True,
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout == "defenses:\n"
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("command", ["run", "hardware", "verify"])
def test_commands_share_the_device_and_data_options(command, capsys):
    """--device, --data-root and --download are one definition shared by every command that loads data."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    for flag in ("--device", "--data-root", "--download"):
        assert flag in out
    assert "cpu, cuda or cuda:N" in " ".join(out.split())


def test_executor_choices_come_from_the_executors():
    from benchmark.cli import _parser
    from benchmark.engine.executors import EXECUTORS

    run = _parser()._subparsers._group_actions[0].choices["run"]
    assert tuple(next(a for a in run._actions if a.dest == "executor").choices) == EXECUTORS
