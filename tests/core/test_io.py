"""The leaf I/O module: one JSON codec for NaN and +-inf, atomic writes and checksums."""

import hashlib
import json
import math

import pytest

from benchmark.core.io import JSON_INF, atomic_write_text, encode_json, json_number, sha256_file


def test_nonfinite_figures_round_trip_through_strict_json():
    figures = {"ratio": math.inf, "low": -math.inf, "ssim": math.nan, "acc": 0.25, "n": 3,
               "nested": [{"x": math.inf}, (1.5, -math.inf)]}
    text = json.dumps(encode_json(figures), allow_nan=False)  # strict JSON: raises if anything non-finite is left
    back = json.loads(text)
    assert back["ratio"] == JSON_INF and back["low"] == -JSON_INF and back["ssim"] is None
    assert json_number(back["ratio"]) == math.inf and json_number(back["low"]) == -math.inf
    assert math.isnan(json_number(back["ssim"]))
    assert json_number(back["acc"]) == 0.25 and json_number(back["n"]) == 3.0
    assert json_number(back["nested"][0]["x"]) == math.inf and json_number(back["nested"][1][1]) == -math.inf


@pytest.mark.parametrize("stored, expected", [("inf", math.inf), ("-inf", -math.inf), ("Infinity", math.inf),
                                              (1.5e308, math.inf)])
def test_older_encodings_and_larger_stand_ins_read_as_infinity(stored, expected):
    assert json_number(stored) == expected


@pytest.mark.parametrize("junk", ["nan", "n/a", True, [1.0], {"a": 1}])
def test_anything_that_is_not_a_number_reads_as_nan(junk):
    assert math.isnan(json_number(junk))


def test_atomic_write_replaces_the_whole_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "deep" / "er" / "f.json"
    atomic_write_text(path, "old")
    atomic_write_text(path, "ünïcode")
    assert path.read_text(encoding="utf-8") == "ünïcode"
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.json"]
    assert sha256_file(path) == hashlib.sha256("ünïcode".encode()).hexdigest()
