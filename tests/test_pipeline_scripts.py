"""scripts/train_ucf101.sh, scripts/train_sky.sh (scripts/lib_pipeline.sh) and scripts/estimate_time.py.

The pipeline scripts run with DRY_RUN=1: every printed command is parsed the way its program
parses it and its config is built as main.py builds it, and the hand-offs between stages (run
folders, checkpoints, token folders, observed frames) are checked.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import main
import validate
from tools.config import ConfigError
from tools.run_dir import run_dir_for

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = {"ucf101": REPO / "scripts" / "train_ucf101.sh", "sky": REPO / "scripts" / "train_sky.sh"}
LIB = REPO / "scripts" / "lib_pipeline.sh"
sys.path.insert(0, str(REPO / "scripts"))


def run_script(data: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """The script with a clean pipeline environment, this interpreter's Python first on PATH."""
    base = {k: v for k, v in os.environ.items() if k not in {
        "DATA_PATH", "RES", "ID", "SEED", "RESULTS", "NPROC", "NET", "STAGES", "DRY_RUN", "FIRST_STEPS",
        "GAN_STEPS", "DDPM_STEPS", "FIRST_BATCH", "GAN_BATCH", "DDPM_BATCH", "FIRST_ARGS", "GAN_ARGS",
        "DDPM_ARGS", "EXTRACT_ARGS", "VALIDATE_ARGS", "CLIPS_PER_VIDEO", "EXTRACT_BATCH", "WORKERS", "NUM_VIDEOS",
        "NUM_SAMPLES", "SAMPLE_STEPS"}}
    base["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}"
    base["VIRTUAL_ENV"] = sys.prefix  # the scripts then use this Python as it is
    return subprocess.run(["bash", str(SCRIPTS[data])], env={**base, **env}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def printed_commands(stdout: str) -> list[list[str]]:
    return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith("+ ")]


def main_config(argv: list[str]):
    """(args, config) exactly as main.py builds them, without running the experiment."""
    args = main.build_parser().parse_intermixed_args(argv)
    return args, main.config_from_args(args)


def train_py_config(argv: list[str]):
    """train.py's command line as main.py sees it (the token folder's defaults aside: it does not exist)."""
    i, j = argv.index("--config"), argv.index("--tokens")
    rest = [a for k, a in enumerate(argv) if k not in (i, i + 1, j, j + 1)]
    return argv[j + 1], main_config(["--exp", "ddpm", "--config", argv[i + 1], *rest, f"model.tokens={argv[j + 1]}"])


def split_launcher(command: list[str]) -> tuple[str, int, list[str]]:
    """(program, processes, its arguments) of ``python X ...`` or ``torchrun ... X ...``."""
    if command[0] == "python":
        return command[1], 1, command[2:]
    assert command[:3] == ["torchrun", "--standalone", "--nproc_per_node"], command
    return command[4], int(command[3]), command[5:]


def parse_pipeline(commands: list[list[str]]) -> dict:
    """Every stage's parsed command and built config, by stage name."""
    stages = {}
    for command in commands:
        program, nproc, argv = split_launcher(command)
        if program == "main.py":
            args, cfg = main_config(argv)
            stages[args.exp] = {"args": args, "cfg": cfg, "nproc": nproc, "argv": argv}
        elif program == "train.py":
            tokens, (args, cfg) = train_py_config(argv)
            stages["ddpm"] = {"args": args, "cfg": cfg, "nproc": nproc, "tokens": tokens}
        elif program == "validate.py":
            stages["validate"] = {"args": validate.build_parser().parse_args(argv), "nproc": nproc}
        else:
            raise AssertionError(f"unexpected program {program} in {command}")
    return stages


VARIANTS = {
    "ucf101_64": ("ucf101", {}),
    "ucf101_256": ("ucf101", {"RES": "256"}),
    # Several processes, relative RESULTS, and the overrides a user can give.
    "sky_256_nproc2": ("sky", {"NPROC": "2", "RESULTS": "runs", "ID": "exp1", "FIRST_STEPS": "10",
                               "DDPM_BATCH": "3", "CLIPS_PER_VIDEO": "2", "NET": "m",
                               "DDPM_ARGS": "train.log_every=5 model.eval_clips=2"}),
}


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory) -> dict:
    out = {}
    for name, (data, env) in VARIANTS.items():
        tmp = tmp_path_factory.mktemp(name)
        (tmp / "data").mkdir()
        proc = run_script(data, tmp, DATA_PATH="data", DRY_RUN="1", **env)
        assert proc.returncode == 0, proc.stderr
        out[name] = (data, env, tmp, proc)
    return out


def test_scripts_are_valid_bash():
    for path in (*SCRIPTS.values(), LIB):
        subprocess.run(["bash", "-n", str(path)], check=True)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_dry_run_commands_build_and_hand_over(dry_runs, variant):
    data, env, tmp, proc = dry_runs[variant]
    commands = printed_commands(proc.stdout)
    assert [split_launcher(c)[0] for c in commands] == ["main.py", "main.py", "main.py", "train.py", "validate.py"]
    stages = parse_pipeline(commands)
    assert list(stages) == ["first_stage", "gan", "extract", "ddpm", "validate"]
    res, nproc = int(env.get("RES", 256 if data == "sky" else 64)), int(env.get("NPROC", 1))
    results = Path(tmp / env["RESULTS"]) if "RESULTS" in env else Path("results")
    data_path = str((tmp / "data").resolve())  # the relative DATA_PATH, made absolute

    first, gan, extract, ddpm, val = (stages[s] for s in ("first_stage", "gan", "extract", "ddpm", "validate"))
    for stage in (first, gan, extract):
        assert stage["cfg"].data.name == data and stage["cfg"].data.path == data_path
    for stage in (first, gan, ddpm):
        assert stage["nproc"] == nproc and stage["args"].auto_resume
        assert stage["cfg"].results_dir == str(results)
    assert extract["nproc"] == val["nproc"] == 1
    # First stage and GAN share one architecture and clip geometry (the GAN checks this at start-up).
    assert first["cfg"].data.resolution == gan["cfg"].data.resolution == res
    assert first["cfg"].data.frames == gan["cfg"].data.frames
    assert first["cfg"].model.vqvae == gan["cfg"].model.vqvae
    # Each stage starts from the previous one's output.
    first_dir, gan_dir = run_dir_for(first["cfg"]), run_dir_for(gan["cfg"])
    assert first_dir != gan_dir and str(res) in first_dir.name
    assert gan["cfg"].first_stage_folder == str(first_dir)
    assert extract["cfg"].first_model == str(gan_dir / "model_last.pth")
    assert extract["cfg"].model.cond_frames == ddpm["cfg"].model.cond_frames > 0
    assert extract["cfg"].model.clips_per_video == int(env.get("CLIPS_PER_VIDEO", 8))
    assert ddpm["tokens"] == extract["cfg"].out == ddpm["cfg"].model.tokens
    assert ddpm["cfg"].model.net == f"rsvp_{env.get('NET', 's2')}"
    assert val["args"].ckpt == str(run_dir_for(ddpm["cfg"]) / "model_last.pth")
    assert val["args"].data_path == data_path and val["args"].out.startswith(str(results))
    # Overrides reach the configs.
    if "FIRST_STEPS" in env:
        assert first["cfg"].train.max_steps == int(env["FIRST_STEPS"])
        assert gan["cfg"].train.max_steps != int(env["FIRST_STEPS"])
    if "DDPM_BATCH" in env:
        assert ddpm["cfg"].train.batch_size == int(env["DDPM_BATCH"])
    if "DDPM_ARGS" in env:
        assert ddpm["cfg"].train.log_every == 5 and ddpm["cfg"].model.eval_clips == 2


def test_a_bad_config_in_a_printed_command_is_caught(dry_runs):
    commands = printed_commands(dry_runs["ucf101_64"][3].stdout)
    program, _, argv = split_launcher(commands[0])
    with pytest.raises(ConfigError, match="train.max_stepz"):
        main_config([*argv, "train.max_stepz=3"])


def test_dry_run_configs_are_the_estimated_ones(dry_runs):
    from estimate_time import PIPELINES
    for name in ("ucf101_64", "ucf101_256"):
        data, env, _, proc = dry_runs[name]
        stages = parse_pipeline(printed_commands(proc.stdout))
        pipeline = PIPELINES[(data, int(env.get("RES", 64)))]
        assert stages["first_stage"]["args"].config == f"configs/{pipeline.first_stage}"
        assert stages["gan"]["args"].config == f"configs/{pipeline.gan}"
        assert stages["ddpm"]["cfg"].model.net == "rsvp_s2"
        assert stages["extract"]["cfg"].train.batch_size == pipeline.extract_batch
    assert {d for d, _ in PIPELINES} == set(SCRIPTS)


@pytest.mark.parametrize("env, message", [
    ({}, "DATA_PATH is not set"),
    ({"DATA_PATH": "missing_dir"}, "is not a directory"),
    ({"DATA_PATH": "a_file"}, "is not a directory"),
    ({"DATA_PATH": "data", "RES": "128"}, "RES=128"),
    ({"DATA_PATH": "data", "NPROC": "two"}, "NPROC=two is not a whole number"),
    ({"DATA_PATH": "data", "STAGES": "first_stage train"}, "unknown stage 'train'"),
])
def test_bad_settings_stop_before_any_command(tmp_path, env, message):
    (tmp_path / "data").mkdir()
    (tmp_path / "a_file").write_text("x")
    for data in SCRIPTS:
        proc = run_script(data, tmp_path, DRY_RUN="1", **env)  # DRY_RUN: nothing runs even if a check failed
        assert proc.returncode != 0
        assert message in proc.stderr
        assert printed_commands(proc.stdout) == []


def test_finished_validation_is_skipped_and_stages_can_be_chosen(tmp_path):
    (tmp_path / "data").mkdir()
    env = dict(DATA_PATH="data", DRY_RUN="1", RESULTS="r", STAGES="ddpm validate")
    ckpt = tmp_path / "r" / "ddpm_s2_main_64_ucf101_42" / "model_last.pth"
    metrics = tmp_path / "r" / "validate_s2_main_64_ucf101_42" / "metrics.json"
    for path in (ckpt, metrics):
        path.parent.mkdir(parents=True)
    ckpt.write_text("older")
    metrics.write_text("{}")
    os.utime(ckpt, (1_000_000, 1_000_000))  # the checkpoint predates the metrics
    proc = run_script("ucf101", tmp_path, **env)
    assert proc.returncode == 0, proc.stderr
    assert [split_launcher(c)[0] for c in printed_commands(proc.stdout)] == ["train.py"]
    assert "skipped" in proc.stderr
    os.utime(ckpt)  # a newer checkpoint (the DDPM trained on): validate again
    proc = run_script("ucf101", tmp_path, **env)
    assert [split_launcher(c)[0] for c in printed_commands(proc.stdout)] == ["train.py", "validate.py"]


# --- scripts/estimate_time.py on the small shapes configs ------------------------------------------

SHAPES_FS = "configs/first_stage/moso_shapes64.yaml"
SHAPES_DDPM = "configs/ddpm/rsvp_s2_shapes64.yaml"
SMALL = ["data.resolution=32", "data.frames=4", "model.vqvae.hidden=16", "model.vqvae.res_depth=1",
         "model.vqvae.attn_heads=2", "model.vqvae.codebook_size=32", "model.vqvae.code_dim=4",
         "model.vqvae.max_frames=4", "model.perceptual.frames=2"]


def test_train_step_cost_is_linear_in_batch_and_matches_measure_memory():
    from estimate_time import train_step_cost
    from measure_memory import measure
    one, two = (train_step_cost("first_stage", SHAPES_FS, b, SMALL) for b in (1, 2))
    assert one.flops > 0 and two.flops == pytest.approx(2 * one.flops, rel=0.01)
    assert one.ops > 100 and two.ops == pytest.approx(one.ops, rel=0.05)  # ~the same operators, bigger tensors
    # The peak is scripts/measure_memory.py's number for the same step. Usually the two agree to
    # the byte; one full-suite run saw a 0.1 % difference (104 KB of 106 MB) that did not recur
    # in isolation (not the RNG, hash seed or GC timing), hence the tolerance.
    assert two.peak_bytes == pytest.approx(measure("first_stage", SHAPES_FS, 2, "bf16", SMALL)["peak_bytes"],
                                           rel=0.005)


def test_sample_cost_grows_by_one_denoiser_call_per_sampling_step():
    from estimate_time import sample_cost
    costs = [sample_cost(SHAPES_DDPM, SHAPES_FS, 2, [f"model.diffusion.sample_steps={n}"], SMALL)
             for n in (2, 4, 6)]
    samples = [s.flops for s, _ in costs]
    assert samples[1] - samples[0] == samples[2] - samples[1] > 0
    assert costs[0][1].flops == costs[2][1].flops > 0  # the first-stage ceiling does not sample
