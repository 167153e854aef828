"""Typed configuration: TOML files, overrides, and typos that fail loudly."""

import pytest

from training.config import RunConfig


def test_shipped_configs_load(tmp_path):
    cfg = RunConfig.load("configs/fashion-mnist.toml")
    assert cfg.data.dataset == "fashion-mnist" and isinstance(cfg.model.hidden, tuple)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert RunConfig.load("configs/digits.toml").data.dataset == "digits"


def test_overrides_parse_toml_values():
    cfg = RunConfig.load(None, ["model.hidden=[64, 32]", "train.lr=0.01", "data.dataset=digits",
                                "train.epochs=3", "model.learn_sigma=false"])
    assert cfg.model.hidden == (64, 32) and cfg.train.lr == 0.01 and cfg.train.epochs == 3
    assert cfg.data.dataset == "digits" and cfg.model.learn_sigma is False


@pytest.mark.parametrize("override, message", [
    ("model.hiden=[1]", "unknown key"),
    ("modle.hidden=[1]", "unknown config section"),
    ("model.arch=transformer", "must be one of"),
    ("train.epochs=1.5", "must be int"),
    ("train.epochs", "section.key=value"),
])
def test_typos_and_bad_values_are_errors(override, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.load(None, [override])
