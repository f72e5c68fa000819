"""The client-cost axis: ratios to the reference, a suite's cost budget as a second admission condition, and the
privacy x client-MACs Pareto view."""

from __future__ import annotations

import pytest

from benchmark.core.errors import SplitbenchError
from benchmark.suites.parse import load_suite, parse_suite
from leaderboard.render import build_tracks, render_run, to_csv
from tests.support.fake_runs import FakeCell


def _cells(defense, knob, attr, recon, macs, deployed=None, val=0.9):
    return [FakeCell(defense, knob, a, v, val_utility=val, macs=macs, deployed_macs=deployed)
            for a, v in (("attr", attr), ("recon", recon))]


def _run(tmp_path, deployed=False, **presentation):
    from tests.support.fake_runs import write_run

    dep = (lambda m: 2 * m) if deployed else (lambda m: None)
    run = (_cells("ref", 0.0, 0.8, 0.8, 50, dep(50)) + _cells("cheap", 0.5, 0.5, 0.5, 50, dep(50))
           + _cells("costly", 0.5, 0.2, 0.2, 150, dep(150)) + _cells("dominated", 0.5, 0.8, 0.8, 100, dep(100)))
    write_run(tmp_path, run, **presentation)
    (t,), _ = build_tracks(tmp_path)
    return t


def _row(t, name):
    return next(r for r in t.rows if r.defense == name)


def test_costs_are_ratios_to_the_reference_as_deployed_when_the_track_has_a_deployment(tmp_path):
    t = _run(tmp_path / "track")
    assert t.cost_basis == "on this track"
    assert _row(t, "ref").cost_ratio["client_macs"] == 1.0
    assert _row(t, "costly").cost_ratio["client_macs"] == pytest.approx(3.0)
    assert _row(t, "costly").cost_ratio["payload_bytes"] == 1.0
    d = _run(tmp_path / "deployed", deployed=True)
    assert d.cost_basis == "deployed on real@l1"
    assert _row(d, "costly").cost_ratio["client_macs"] == pytest.approx(3.0)
    assert _row(d, "costly").cost_ratio["client_params"] == 1.0  # the deployed params (7 each), not the track's


def test_the_pareto_front_keeps_rows_no_other_beats_on_both_privacy_and_cost(tmp_path):
    t = _run(tmp_path)
    front = {r.defense for r in t.rows if r.pareto}
    # dominated (2x, leaking as the reference) is beaten on both by cheap (1x, intervals apart); costly is the most
    # private; the reference and cheap are the cheapest (equal cost: neither beats the other on it)
    assert front == {"ref", "cheap", "costly"}
    md = render_run(tmp_path, write=False)
    assert "### Privacy × client cost" in md and "This suite declares no cost budget" in md
    csv = to_csv(build_tracks(tmp_path)[0])
    assert "client_macs_ratio" in csv.splitlines()[0] and "pareto" in csv.splitlines()[0]


@pytest.mark.parametrize("admission", ["selection", "preregistered"])
def test_a_cost_budget_is_a_second_admission_condition(tmp_path, admission):
    pre = {"preregistered": {"cheap": {"*": 0.5}, "costly": {"*": 0.5}, "dominated": {"*": 0.5}}} \
        if admission == "preregistered" else {}
    t = _run(tmp_path, admission=admission, cost_budget={"client_macs": 1.5}, **pre)
    assert _row(t, "cheap").selected and _row(t, "ref").selected
    for name, ratio in (("costly", 3.0), ("dominated", 2.0)):
        r = _row(t, name)
        assert not r.selected and not r.admissible
        assert f"client MACs is {ratio:.2f}x the reference's, above the cost budget of 1.5x" in r.note
    md = render_run(tmp_path, write=False)
    assert "Not ranked (outside the cost budget): `costly`, `dominated`." in md
    assert "Cost budget: client MACs at most 1.5x the reference's" in md


def test_suite_cost_budgets_parse_and_bad_ones_are_one_clear_line():
    raw = {"name": "t", "scenarios": ["digits"], "backbones": [{"name": "test_resnet", "split": "layer1"}],
           "defenses": ["no_pruning"], "attacks": ["attribute_inference"], "cost_budget": {"client_macs": 1.5}}
    suite = parse_suite(raw, "f.yaml")
    assert suite.cost_budget == {"client_macs": 1.5}
    assert suite.presentation()["cost_budget"] == {"client_macs": 1.5}
    for bad, match in (({"client_flops": 2}, "unknown cost 'client_flops'"),
                       ({"client_macs": 0}, "client_macs must be a positive ratio"),
                       ([1.5], "expected a mapping of client_macs, client_params, payload_bytes")):
        with pytest.raises(SplitbenchError, match=f"f.yaml: cost_budget: {match}"):
            parse_suite({**raw, "cost_budget": bad}, "f.yaml")
    assert load_suite("standard-cpu").cost_budget == {"client_macs": 1.5}


def test_the_site_shows_the_cost_table_and_the_pareto_plot(tmp_path):
    from leaderboard.site.build import build_site

    _run(tmp_path / "run", deployed=True, cost_budget={"client_macs": 1.5})
    index = build_site([tmp_path / "run"], tmp_path / "site")
    (page,) = (index.parent / "tracks").glob("*.html")
    text = page.read_text()
    table = text.split('id="cost-table"')[1].split("</table>")[0]
    assert "Pareto" in table and "✓" in table and "1.00×" in table
    assert "deployed on real@l1" in text
    assert "client_macs at most 1.50× the reference's (a second admission condition)" in text
    plots = list((index.parent / "plots").glob("*-privacy-cost.png"))
    assert len(plots) == 1 and plots[0].stat().st_size > 1000
