"""Strict config building and stable hashing."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from benchmark.core.errors import SplitbenchError
from benchmark.core.fields import build_config, config_hash, field, to_dict
from benchmark.models.trainer import TrainConfig


@dataclasses.dataclass(frozen=True)
class Inner:
    epochs: int = field(3, "epochs")


@dataclasses.dataclass(frozen=True)
class Cfg:
    ratio: float = field(0.5, "a ratio")
    mode: Literal["a", "b"] = field("a", "a mode")
    names: tuple[str, ...] = field(("x",), "names")
    limit: int | None = field(None, "optional limit")
    flag: bool = field(False, "a flag")
    inner: Inner = dataclasses.field(default_factory=Inner, metadata={"help": "nested"})

    def validate(self):
        if not 0 <= self.ratio <= 1:
            raise ValueError(f"ratio must be in [0, 1], got {self.ratio}")


def test_build_coerces_types():
    cfg = build_config(Cfg, {"ratio": "0.25", "names": ["a", "b"], "limit": "7", "flag": "true",
                             "inner": {"epochs": 2.0}})
    assert cfg == Cfg(0.25, "a", ("a", "b"), 7, True, Inner(2))


def test_unknown_key_suggests():
    with pytest.raises(SplitbenchError, match=r"where: unknown key 'ratoi' for Cfg; did you mean 'ratio'"):
        build_config(Cfg, {"ratoi": 1}, "where")


@pytest.mark.parametrize("values, message", [
    ({"ratio": "abc"}, "expected a number"),
    ({"mode": "c"}, r"expected one of \['a', 'b'\]"),
    ({"names": "abc"}, "expected a list"),
    ({"flag": 3}, "expected true or false"),
    ({"inner": {"epochs": 1.5}}, "expected an integer"),
    ({"ratio": 2.0}, r"ratio must be in \[0, 1\]"),
])
def test_bad_values_name_the_field(values, message):
    with pytest.raises(SplitbenchError, match=message):
        build_config(Cfg, values, "suite x")


def test_hash_is_stable_and_sensitive():
    a = build_config(Cfg, {"ratio": 0.5})
    b = build_config(Cfg, {"ratio": "0.5"})
    assert config_hash(a) == config_hash(b) == config_hash(to_dict(a))
    assert config_hash(a) != config_hash(build_config(Cfg, {"ratio": 0.6}))
    assert config_hash(TrainConfig()) == config_hash(TrainConfig())


def test_mutable_defaults_are_refused():
    with pytest.raises(TypeError, match="tuple"):
        field([1, 2], "a list")


def test_a_field_declared_omit_default_leaves_existing_configs_and_their_hashes_as_they_were():
    # TrainConfig.schedule came after records existed: at its default it is not part of any config, so every
    # cell hash made before it stays the same; any other value is
    before = {"epochs": 10, "batch_size": 64, "lr": 0.001, "weight_decay": 0.0, "optimizer": "adam"}
    assert to_dict(TrainConfig()) == before
    assert config_hash(TrainConfig()) == config_hash(before)
    cosine = build_config(TrainConfig, {"schedule": "cosine"}, "train")
    assert to_dict(cosine) == {**before, "schedule": "cosine"} and config_hash(cosine) != config_hash(before)
    assert build_config(TrainConfig, to_dict(cosine), "train") == cosine  # round trip
    with pytest.raises(SplitbenchError, match="schedule"):
        build_config(TrainConfig, {"schedule": "linear"}, "suite x: train")
