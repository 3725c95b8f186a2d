"""What --help and --print_config show a new user."""
from __future__ import annotations

import argparse

import pytest

import main
import train
import validate
from tools.registry import load_experiments


def test_main_help_lists_every_experiment_with_its_line_and_the_defaults():
    text = main.build_parser().format_help()
    for experiment in load_experiments().values():
        assert f"{experiment.name:<12} {experiment.description}" in text
    assert "default: the config's, else 42" in text and "--print_config" in text


def test_train_help_shows_the_shared_options():
    text = train.build_parser().format_help()
    for option in ("--id", "--seed", "--resume", "--auto_resume", "--device", "--batch_size", "key=value", "--tokens"):
        assert option in text


@pytest.mark.parametrize("parser", [main.build_parser(), train.build_parser(), validate.build_parser()],
                         ids=["main", "train", "validate"])
def test_every_flag_has_a_help_line(parser):
    for action in parser._actions:
        if not isinstance(action, argparse._HelpAction):
            assert action.help, f"{action.option_strings or action.dest} has no help"


def test_print_config_shows_types_defaults_and_docs_and_creates_nothing(tmp_path, capsys):
    argv = ["--exp", "first_stage", "--config", "configs/first_stage/moso_shapes32.yaml", "--print_config",
            f"results_dir={tmp_path / 'r'}", "train.batch_size=3"]
    assert main.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "train.batch_size: 3  # int, default 8; per process and micro-batch" in lines
    assert "data.resolution: 32  # int, default 64; clips are centre-cropped to square, then resized to this" in lines
    assert any(line.startswith("model.vqvae.code_dim: 4  # int, default 8") for line in lines)
    assert not (tmp_path / "r").exists()


def test_readme_links_nothing_outside_the_repository():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text()
    assert "../" not in text
    for doc in ("docs/USAGE.md", "requirements-dev.txt"):
        assert doc in text and (root / doc).is_file()
