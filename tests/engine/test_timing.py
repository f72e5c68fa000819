"""``splitbench timing``: a run's compute time read back from its records, each model's fit counted once."""

from __future__ import annotations

import pytest

from benchmark.cli import main
from benchmark.core.errors import SplitbenchError
from benchmark.engine.timing import FIT, FIT_ADMISSION, time_split
from tests.support.fake_runs import FakeCell, write_run


def _run(tmp_path):
    cells = []
    for seed in (0, 1):
        for d, k, fit in (("ref", 0, 10.0), ("d", 0.5, 20.0)):
            cells += [FakeCell(d, k, "attr", seed=seed, fit_seconds=fit, attack_seconds=3.0),
                      FakeCell(d, k, "recon", seed=seed, fit_seconds=fit, attack_seconds=5.0)]
    cells += [FakeCell("ref", 0, "model", seed=5, fit_seconds=11.0),
              FakeCell("d", 0.5, "model", seed=5, fit_seconds=21.0)]
    write_run(tmp_path, cells)
    return tmp_path


def test_fits_count_once_per_model_and_admission_fits_apart(tmp_path):
    t = time_split(_run(tmp_path))
    assert t.models == 6 and t.admission_models == 2 and t.cells == 10 and t.missing == 0
    assert t.seconds[FIT] == pytest.approx(2 * (10 + 20)) and t.counts[FIT] == 4  # not once per cell
    assert t.seconds[FIT_ADMISSION] == pytest.approx(32) and t.counts[FIT_ADMISSION] == 2
    assert t.seconds["attr"] == pytest.approx(12) and t.seconds["recon"] == pytest.approx(20)
    assert t.total == pytest.approx(60 + 32 + 32)
    text = t.table(workers=2)
    assert "6 models (4 attacked, 2 trained and validated for admission only), 10 cells" in text
    assert "at 2 workers: 1.0 minutes with the work spread evenly" in text  # 124 s / 2 / 60


def test_by_setting_counts_the_models_of_each_setting(tmp_path):
    t = time_split(_run(tmp_path), by="setting")
    ref = next(k for k in t.seconds if k.endswith(" ref@0"))
    assert t.seconds[ref] == pytest.approx(2 * 10 + 11 + 2 * 8) and t.counts[ref] == 3


def test_tuning_time_is_a_part_of_its_own(tmp_path):
    write_run(tmp_path, [FakeCell("ref", 0, "attr", fit_seconds=1.0, attack_seconds=2.0, tuning_seconds=6.0),
                         FakeCell("ref", 0, "recon", fit_seconds=1.0, attack_seconds=4.0)])
    t = time_split(tmp_path)
    assert t.seconds["attr (tuning)"] == pytest.approx(6.0) and t.seconds["attr"] == pytest.approx(2.0)
    assert "recon (tuning)" not in t.seconds and t.total == pytest.approx(13.0)
    assert time_split(tmp_path, by="setting").total == pytest.approx(13.0)


def test_cells_without_a_time_are_counted_apart(tmp_path):
    write_run(tmp_path, [FakeCell("ref", 0, "attr", fit_seconds=1.0, attack_seconds=2.0),
                         FakeCell("ref", 0, "recon", fit_seconds=1.0)])
    t = time_split(tmp_path)
    assert t.missing == 1 and t.total == pytest.approx(3.0)
    assert "1 attack cells carry no time" in t.table()


def _both_clocks(tmp_path, cpu_on_second=True):
    write_run(tmp_path, [FakeCell("ref", 0, "attr", fit_seconds=10.0, attack_seconds=4.0, tuning_seconds=8.0,
                                  fit_cpu_seconds=6.0, attack_cpu_seconds=2.0, tuning_cpu_seconds=5.0),
                         FakeCell("ref", 0, "recon", fit_seconds=10.0, attack_seconds=9.0, fit_cpu_seconds=6.0,
                                  attack_cpu_seconds=3.0 if cpu_on_second else None),
                         FakeCell("ref", 0, "model", seed=5, fit_seconds=7.0, fit_cpu_seconds=4.0)])
    return tmp_path


def test_the_cpu_clock_is_read_when_every_record_has_it(tmp_path):
    run = _both_clocks(tmp_path)
    t = time_split(run)  # auto
    assert t.clock == "cpu" and t.total == pytest.approx(6 + 2 + 5 + 3 + 4)
    assert t.seconds["attr (tuning)"] == pytest.approx(5.0) and t.seconds[FIT_ADMISSION] == pytest.approx(4.0)
    assert "seconds on the CPU time of each worker process" in t.table()
    wall = time_split(run, clock="wall")
    assert wall.clock == "wall" and wall.total == pytest.approx(10 + 4 + 8 + 9 + 7)
    assert "seconds on the wall clock of each worker" in wall.table()


def test_records_without_the_cpu_clock_make_auto_read_the_wall_clock(tmp_path):
    run = _both_clocks(tmp_path, cpu_on_second=False)
    assert time_split(run).clock == "wall"
    cpu = time_split(run, clock="cpu")  # asked for: the record without it is counted apart
    assert cpu.missing == 1 and cpu.total == pytest.approx(6 + 2 + 5 + 4)
    assert "1 attack cells carry no time on this clock" in cpu.table()


def test_a_tuning_time_without_the_cpu_clock_makes_auto_read_the_wall_clock(tmp_path):
    write_run(tmp_path, [FakeCell("ref", 0, "attr", fit_seconds=1.0, attack_seconds=2.0, tuning_seconds=3.0,
                                  fit_cpu_seconds=1.0, attack_cpu_seconds=2.0)])
    assert time_split(tmp_path).clock == "wall"


def test_a_model_without_a_fit_time_on_the_clock_is_counted_apart(tmp_path):
    write_run(tmp_path, [FakeCell("ref", 0, "attr", fit_seconds=10.0, attack_seconds=4.0, attack_cpu_seconds=2.0)])
    t = time_split(tmp_path, clock="cpu")
    assert t.missing_fits == 1 and t.total == pytest.approx(2.0)
    assert "1 models carry no fit time on this clock" in t.table()


def test_one_defense_s_cells_alone(tmp_path, capsys):
    run = _run(tmp_path)
    t = time_split(run, defense="d")
    assert t.models == 3 and t.cells == 5 and t.total == pytest.approx(2 * 20 + 21 + 2 * 8)
    with pytest.raises(SplitbenchError, match=r"--defense: the run has no cells of 'dd' \(it has d, ref\); "
                                              r"did you mean 'd'\?"):
        time_split(run, defense="dd")
    assert main(["timing", str(run), "--defense", "ref"]) == 0
    assert "3 models (2 attacked, 1 trained" in capsys.readouterr().out


def test_the_command_prints_the_split_and_bad_input_is_one_line(tmp_path, capsys):
    run = _run(tmp_path / "run")
    assert main(["timing", str(run), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "fit (admission only)" in out and "at 1 worker: 2.1 minutes" in out
    assert main(["timing", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "not a run directory" in err and err.count("\n") == 1
    assert main(["timing", str(run), "--workers", "0"]) == 2
    assert "--workers must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(SplitbenchError, match="--by must be 'part' or 'setting'"):
        time_split(run, by="cell")
    with pytest.raises(SplitbenchError, match="--clock must be one of auto, wall, cpu; got 'gpu'"):
        time_split(run, clock="gpu")
    assert main(["timing", str(run), "--clock", "wall"]) == 0
    assert "seconds on the wall clock" in capsys.readouterr().out
