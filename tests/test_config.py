"""Typed config loading: bases, dotted overrides, unknown keys, wrong types, round trip."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from pipeline.config import (ConfigError, config_hash, dump_config, from_dict, load_config,
                             parse_overrides, save_config)
from trainer.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ["baseline", "foa_yolo", "foa_iv", "foa_iv_yolo", "beamform", "beamform_yolo",
               "avc", "avts", "avsa"]


@dataclass(frozen=True)
class Inner:
    lr: float = 1e-4
    steps: int = 10
    mode: Literal["a", "b"] = "a"
    sizes: tuple[int, ...] = (1, 2)


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    flag: bool = False
    inner: Inner = field(default_factory=Inner)
    path: str | None = None


def test_overrides_are_typed_and_nested(tmp_path):
    cfg = load_config(Outer, None, ["inner.lr=3e-4", "inner.steps=5", "flag=true",
                                     "inner.sizes=[3, 4]", "path=null"])
    assert cfg.inner.lr == pytest.approx(3e-4) and isinstance(cfg.inner.lr, float)
    assert cfg.inner.steps == 5 and cfg.flag is True
    assert cfg.inner.sizes == (3, 4)
    assert cfg.path is None


def test_int_is_accepted_for_float_but_not_the_reverse():
    assert load_config(Outer, None, ["inner.lr=1"]).inner.lr == 1.0
    with pytest.raises(ConfigError, match=r"inner.steps: expected int, got 0.5"):
        load_config(Outer, None, ["inner.steps=0.5"])


@pytest.mark.parametrize("override, message", [
    ("inner.lrr=1", r"unknown config key\(s\) \['inner.lrr'\]"),
    ("nope=1", r"unknown config key\(s\) \['nope'\]"),
    ("flag=yes please", r"flag: expected bool"),
    ("inner.lr=fast", r"inner.lr: expected float, got .fast."),
    ("inner.mode=c", r"inner.mode: expected one of \['a', 'b'\], got 'c'"),
    ("inner=3", r"inner: expected a mapping"),
    ("novalue", r"not of the form dotted.key=value"),
])
def test_bad_overrides_are_clear_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Outer, None, [override])


def test_base_chain_merges_and_detects_cycles(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\ninner:\n  lr: 0.5\n  steps: 3\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\ninner:\n  steps: 7\n")
    cfg = load_config(Outer, tmp_path / "child.yaml")
    assert (cfg.name, cfg.inner.lr, cfg.inner.steps) == ("base", 0.5, 7)
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(Outer, tmp_path / "a.yaml")


def test_yaml_is_read_safely(tmp_path):
    (tmp_path / "evil.yaml").write_text("name: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(Exception, match="could not determine a constructor"):
        load_config(Outer, tmp_path / "evil.yaml")


def test_saved_resolved_config_round_trips(tmp_path):
    cfg = load_config(TrainConfig, ROOT / "configs/experiments/beamform_yolo.yaml",
                      ["optim.lr=3e-4", "data.batch_size=8"])
    saved = save_config(cfg, tmp_path / "run" / "config.yaml")
    again = load_config(TrainConfig, saved)
    assert again == cfg
    assert config_hash(again) == config_hash(cfg)
    assert "lr: 0.0003" in dump_config(cfg)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_config_loads(name):
    cfg = load_config(TrainConfig, ROOT / "configs" / "experiments" / f"{name}.yaml")
    assert cfg.experiment == name


def test_experiments_select_the_papers_inputs():
    load = lambda n: load_config(TrainConfig, ROOT / f"configs/experiments/{n}.yaml")
    assert load("beamform_yolo").data.audio_input == "beamform"
    assert load("beamform_yolo").data.viewpoints == "yolo"
    assert load("foa_iv").data.audio_channels == 7
    assert load("baseline").data.audio_channels == 4
    assert load("avc").curriculum.pretext == "avc"
    assert load("avsa").curriculum.switch_epoch > 0


def test_parse_overrides_rejects_conflicts():
    with pytest.raises(ConfigError):
        parse_overrides(["a=1", "a.b=2"])


def test_cross_field_validation():
    with pytest.raises(ConfigError, match="switch_epoch"):
        load_config(TrainConfig, None, ["curriculum.switch_epoch=5", "curriculum.epochs=2"])
    with pytest.raises(ConfigError, match="curriculum.epochs must be >= 1"):
        load_config(TrainConfig, None, ["curriculum.epochs=0", "curriculum.switch_epoch=0"])


@pytest.mark.parametrize("override, message", [
    ("data.object_view_share=1.5", r"object_view_share must be in \[0, 1\]"),
    ("data.viewpoints=yolo", r"object_view_share mixes yolo viewpoints"),
])
def test_object_view_share_is_checked(override, message):


    with pytest.raises(ConfigError, match=message):
        load_config(TrainConfig, None, ["data.object_view_share=0.5", override]
                    if "yolo" in override else [override])


def test_renamed_keys_still_load_under_their_former_names(caplog):
    """data.num_viewpoints became data.views_per_step (K per step) and viewpoints.num_viewpoints
    viewpoints.bank_size (the stored V): files written before (saved configs, checkpoints) load
    with a warning; a former name typed as an override is refused with the new one; giving
    both names is refused; the preprocessing content hash is unchanged, so shard folders made
    before the rename stay valid."""
    import logging

    from pipeline.preprocess_config import PreprocessConfig


    with caplog.at_level(logging.WARNING):
        old = from_dict(TrainConfig, {"data": {"num_viewpoints": 3}})      # a checkpoint's
    assert old.data.views_per_step == 3 and "now called data.views_per_step" in caplog.text
    with pytest.raises(ConfigError, match="former name of data.views_per_step"):
        from_dict(TrainConfig, {"data": {"num_viewpoints": 2, "views_per_step": 3}})
    with pytest.raises(ConfigError, match="data.num_viewpoints is now called data.views_per_step"
                                          "; use data.views_per_step=2"):
        load_config(TrainConfig, None, ["data.num_viewpoints=2"])           # typed: refused
    with pytest.raises(ConfigError, match="viewpoints.bank_size=8"):
        load_config(PreprocessConfig, None, ["viewpoints.num_viewpoints=8"])
    before = from_dict(PreprocessConfig, {"viewpoints": {"num_viewpoints": 8}})  # a saved file
    after = load_config(PreprocessConfig, None, ["viewpoints.bank_size=8"])
    assert before == after and before.content_hash() == after.content_hash()
    assert after.content_dict()["viewpoints"]["num_viewpoints"] == 8      # hashed as before
