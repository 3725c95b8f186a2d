"""main.py: experiment dispatch, config errors as exit status 2, run folders that never overwrite."""
from dataclasses import dataclass

import pytest
from omegaconf import OmegaConf

import main
from tools.config import ConfigError
from tools.registry import EXPERIMENTS, Experiment, register_experiment


@dataclass
class ProbeModel:
    width: int = 4
    fail: bool = False  # raise a ConfigError during set-up, before writing anything


CALLS: list = []


def _run(cfg, run_dir, resume):
    CALLS.append((cfg, run_dir, resume))
    if cfg.model.fail:
        raise ConfigError("probe set-up failed")
    (run_dir / "log.txt").write_text("a run was here\n")  # what a started run leaves
    return 0


@pytest.fixture(autouse=True)
def probe_experiment():
    """A test-only experiment that records how it was called (not shipped in the registry)."""
    exp = register_experiment(Experiment(name="probe", model_schema=ProbeModel, run=_run))
    CALLS.clear()
    yield exp
    EXPERIMENTS.pop("probe", None)


def run_main(tmp_path, *args):
    return main.main(["--exp", "probe", f"results_dir={tmp_path / 'results'}", *args])


def test_run_folder_name_and_resolved_config(tmp_path):
    assert run_main(tmp_path, "--data", "shapes", "--id", "a", "--seed", "7", "--batch_size", "3", "model.width=9") == 0
    cfg, run_dir, resume = CALLS[-1]
    assert run_dir == tmp_path / "results" / "probe_a_shapes_7"
    saved = OmegaConf.load(run_dir / "config.yaml")
    assert saved.train.batch_size == 3 and saved.model.width == 9 and saved.seed == 7
    assert "optim" in saved.train  # fully resolved: defaults included
    assert resume is False


def test_existing_folder_needs_resume_or_new_id(tmp_path, capsys):
    assert run_main(tmp_path, "--id", "x") == 0
    assert run_main(tmp_path, "--id", "x") == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--resume" in err and "--id" in err
    assert len(CALLS) == 1  # the second call did not run anything
    assert run_main(tmp_path, "--id", "x", "--resume") == 0
    assert CALLS[-1][2] is False  # a folder without a checkpoint: the stage starts over in it
    (CALLS[-1][1] / "model_last.pth").write_bytes(b"")
    assert run_main(tmp_path, "--id", "x", "--resume") == 0
    assert CALLS[-1][2] is True


def test_resume_without_folder_is_an_error(tmp_path, capsys):
    assert run_main(tmp_path, "--id", "never", "--resume") == 2
    assert "no run folder" in capsys.readouterr().err


def test_config_errors_exit_2_naming_the_key(tmp_path, capsys):
    assert run_main(tmp_path, "train.max_stepz=3") == 2
    err = capsys.readouterr().err
    assert "train.max_stepz" in err and "train.max_steps" in err
    assert run_main(tmp_path, "model.width=wide") == 2
    assert "model.width" in capsys.readouterr().err
    assert not CALLS


def test_unknown_experiment_lists_available(tmp_path, capsys):
    assert main.main(["--exp", "nope", f"results_dir={tmp_path}"]) == 2
    assert "probe" in capsys.readouterr().err


def test_flags_override_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 1\ntrain:\n  batch_size: 2\n")
    assert run_main(tmp_path, "--config", str(path), "--seed", "5") == 0
    cfg = CALLS[-1][0]
    assert cfg.seed == 5 and cfg.train.batch_size == 2


def test_auto_resume_starts_then_continues(tmp_path):
    assert run_main(tmp_path, "--id", "auto", "--auto_resume") == 0
    assert CALLS[-1][2] is False
    # crashed before its first checkpoint: the folder is reused and the stage starts over
    assert run_main(tmp_path, "--id", "auto", "--auto_resume") == 0
    assert CALLS[-1][2] is False
    (CALLS[-1][1] / "model_last.pth").write_bytes(b"")
    assert run_main(tmp_path, "--id", "auto", "--auto_resume") == 0
    assert CALLS[-1][2] is True
