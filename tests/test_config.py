"""The config schema: YAML + key=value overrides, strict keys and types, helpful messages."""
from dataclasses import dataclass

import pytest
from omegaconf import OmegaConf

from tools.config import ConfigError, RunConfig, build_config, closest_keys, config_diff, save_config


@dataclass
class TinyModel:
    width: int = 8
    kind: str = "conv"


def schema():
    return RunConfig(exp="toy", model=TinyModel())


def test_defaults_yaml_and_overrides_layer_in_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  max_steps: 7\n  batch_size: 3\nmodel:\n  width: 16\n")
    cfg = build_config(schema(), path, ["train.batch_size=5", "data.frames=8"])
    assert cfg.train.max_steps == 7  # from YAML
    assert cfg.train.batch_size == 5  # override beats YAML
    assert cfg.data.frames == 8
    assert cfg.model.width == 16 and cfg.model.kind == "conv"
    assert cfg.train.log_every == RunConfig().train.log_every  # untouched default


@pytest.mark.parametrize("key, expected", [
    ("train.max_step", "train.max_steps"),
    ("data.resolutoin", "data.resolution"),
    ("model.widht", "model.width"),
    ("batch_size", "train.batch_size"),  # right leaf, wrong section
])
def test_unknown_key_names_itself_and_closest_valid_keys(key, expected):
    with pytest.raises(ConfigError) as err:
        build_config(schema(), None, [f"{key}=3"])
    message = str(err.value)
    assert f"'{key}'" in message
    assert expected in message


def test_unknown_key_in_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  lr_typo: 0.1\n")
    with pytest.raises(ConfigError, match=r"train\.lr_typo.*bad\.yaml"):
        build_config(schema(), path)


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(ConfigError) as err:
        build_config(schema(), None, ["train.max_steps=many"])
    assert "train.max_steps" in str(err.value) and "int" in str(err.value)


def test_malformed_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        build_config(schema(), None, ["train.max_steps"])
    with pytest.raises(ConfigError, match="not found"):
        build_config(schema(), tmp_path / "nope.yaml")


def test_closest_keys_prefers_similar_paths():
    assert closest_keys("train.max_step", ["train.max_steps", "data.path"])[0] == "train.max_steps"


def test_saved_config_round_trips_and_diff(tmp_path):
    cfg = build_config(schema(), None, ["seed=3"])
    save_config(cfg, tmp_path / "config.yaml")
    loaded = OmegaConf.load(tmp_path / "config.yaml")
    assert config_diff(loaded, cfg) == {}
    changed = build_config(schema(), None, ["seed=4"])
    assert config_diff(loaded, changed) == {"seed": (3, 4)}


def test_config_files_inherit_from_a_base(tmp_path):
    (tmp_path / "base.yaml").write_text("seed: 3\ntrain:\n  max_steps: 7\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\ntrain:\n  max_steps: 9\n")
    cfg = build_config(schema(), tmp_path / "child.yaml")
    assert cfg.seed == 3 and cfg.train.max_steps == 9
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="loop"):
        build_config(schema(), tmp_path / "loop.yaml")
