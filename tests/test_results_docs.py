"""The results table and document are computed from metrics.json files and run folders."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from scripts.results_table import table
from scripts.write_results import comparisons, main as write_results_main, stage_wall_times, training_budget

REPO = Path(__file__).resolve().parent.parent


def _metrics(run_dir: Path, psnr: float, base_psnr: float, ceiling_psnr: float) -> dict:
    summary = lambda p, s: {"psnr": p, "psnr_best_of_n": p + 0.5, "ssim": s, "ssim_best_of_n": s + 0.01}  # noqa: E731
    return {
        "model": {"summary": summary(psnr, 0.6), "skipped": {"lpips": "no weights"}},
        "copy_last_frame": {"summary": summary(base_psnr, 0.7)},
        "first_stage_ceiling": {"summary": summary(ceiling_psnr, 0.65)},
        "checkpoint": str(run_dir / "model_last.pth"),
        "settings": {"num_videos": 8, "num_samples": 2, "cond_frames": 4, "pred_frames": 8, "sampler": "dpm",
                     "steps": 20, "seed": 0, "weights": "ema"},
    }


def _run_dir(tmp_path: Path, name: str, step_seconds: float) -> Path:
    run = tmp_path / name
    run.mkdir()
    (run / "log.txt").write_text("[t] training model (1,234 parameters) on cpu x1, precision auto, "
                                 "batch 16/process, steps 0 -> 100, run dir x\n")
    lines = [{"step": s, "loss": 1.0, "time/step": step_seconds} for s in (50, 100)] + [{"step": 100, "eval/psnr": 1}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    return run


def test_table_has_baseline_ceiling_and_lpips_column(tmp_path):
    runs = {"A": _metrics(tmp_path, 20.0, 19.0, 21.0)}
    text = table(runs)
    assert "| copy last frame (baseline) | 19.0000 |" in text
    assert "| A | 20.0000 | 20.5000 |" in text and text.splitlines()[2].endswith(" | – |")
    assert "| A | 20.0000 | 20.5000 | 0.6000 | 0.6100 | – | 21.0000 |" in text  # its own ceiling, last column
    assert "LPIPS ↓" in text and "Not computed (weights not on this machine): lpips" in text


def test_comparisons_follow_the_numbers(tmp_path):
    better = comparisons({"A": _metrics(tmp_path, 20.0, 19.0, 21.0), "B": _metrics(tmp_path, 19.5, 19.0, 21.0)})
    assert "best model A 20.0000, better than copying the last frame (19.0000) by 1.0000" in better[0]
    assert "above the baseline" in better[-1]
    assert "- A against copying the last frame: PSNR 20.0000 (beats 19.0000), SSIM 0.6000 (loses to 0.7000)." in better
    worse = comparisons({"A": _metrics(tmp_path, 18.0, 19.0, 18.5)})
    assert "worse than copying the last frame" in worse[0] and "below the baseline" in worse[-1]


def test_training_budget_sums_step_times(tmp_path):
    budget = training_budget(_run_dir(tmp_path, "run", step_seconds=0.6))
    assert budget["steps"] == 100 and budget["parameters"] == "1,234" and budget["batch"] == "16"
    assert abs(budget["train_minutes"] - 1.0) < 1e-9  # 100 steps x 0.6 s
    gan = tmp_path / "gan"
    gan.mkdir()
    (gan / "log.txt").write_text("[t] training model, disc_frame, disc_clip (733,153 parameters) on cpu x1, "
                                 "precision auto, batch 8/process, steps 0 -> 200, run dir x\n")
    assert (training_budget(gan)["parameters"], training_budget(gan)["batch"]) == ("733,153", "8")


def test_write_results_document(tmp_path):
    run = _run_dir(tmp_path, "ddpm_run", step_seconds=0.3)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps(_metrics(run, 20.0, 19.0, 21.0)))
    times = tmp_path / "times.txt"
    # a re-run that trained counts (120 replaces 999); one that reused the finished stage (3 s) does not
    times.write_text("first stage 999\ntrain RSVP-S2 60\nfirst stage 120\nfirst stage 3\n")
    out = tmp_path / "RESULTS.md"
    probe = tmp_path / "probe.txt"
    probe.write_text("motion   PSNR\ntrue     19.4\n")
    assert write_results_main([f"RSVP-S2={metrics}", "--out", str(out), "--command", "bash x.sh",
                               "--stage_times", str(times), "--note", "shared machine",
                               "--attach", f"Motion probe={probe}"]) == 0
    text = out.read_text()
    assert text.endswith("## Motion probe\n\nOutput of the script that wrote `" + str(probe) + "`:\n\n"
                         "    motion   PSNR\n    true     19.4\n")
    assert "`bash x.sh`" in text and "| RSVP-S2 | 20.0000 |" in text
    assert "| first stage | 2.0 |" in text and "16.6" not in text and "- Note: shared machine" in text and f"| `{run}` | 1,234 | 16 | 100 | 0.5 |" in text
    assert "- Machine: " in text and "cores" in text


def test_timed_stage_records_a_stopped_command_and_passes_its_status_on(tmp_path):
    times = tmp_path / "times.txt"
    script = (f'set -e; source {REPO / "scripts/lib_stages.sh"}; timed_stage {times} "first stage" true; '
              f'timed_stage {times} train sh -c "exit 143"; echo not reached')
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert done.returncode == 143 and "not reached" not in done.stdout  # set -e still stops the caller
    assert times.read_text() == "first stage 0\ntrain 0 exit=143\n"


def test_an_output_is_current_only_when_newer_than_its_checkpoint(tmp_path):
    ckpt, report = tmp_path / "model_last.pth", tmp_path / "report.json"
    ckpt.write_text("weights")
    check = f'source {REPO / "scripts/lib_stages.sh"}; is_current {report} {ckpt}'
    assert subprocess.run(["bash", "-c", check]).returncode == 1  # not made yet
    report.write_text("{}")
    os.utime(ckpt, (1_000, 1_000))
    assert subprocess.run(["bash", "-c", check]).returncode == 0  # made from these weights
    os.utime(ckpt, None)
    os.utime(report, (1_000, 1_000))
    assert subprocess.run(["bash", "-c", check]).returncode == 1  # the weights changed since


def test_stage_wall_times_credit_stopped_runs_to_the_run_that_resumes_them():
    lines = ["first stage 999", "first stage 100 exit=143", "first stage 50",  # stopped, then resumed
             "first stage 3",  # a re-run that found it finished keeps 150
             "validate 40", "validate 60",  # a re-run that did work replaces the earlier time
             "train 70 exit=143", "train 5 exit=130"]  # stopped twice, never finished
    assert stage_wall_times(lines) == {"first stage": 150.0, "validate": 60.0, "train (not finished)": 75.0}


def test_readme_block_is_replaced_and_the_rest_kept(tmp_path):
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps(_metrics(tmp_path, 20.0, 19.0, 21.0)))
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nold table\n<!-- results:end -->\noutro\n")
    assert write_results_main([f"RSVP-S2={metrics}", "--out", str(tmp_path / "R.md"), "--command", "c",
                               "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n<!-- results:start -->") and text.endswith("<!-- results:end -->\noutro\n")
    assert "old table" not in text and "| RSVP-S2 | 20.0000 |" in text


def test_readme_figure_stacks_videos_and_enforces_the_size_budget(tmp_path):
    import numpy as np
    from PIL import Image

    from scripts.readme_figure import main as figure_main
    from tools.video_io import write_video

    rng = np.random.default_rng(0)
    for i in range(3):
        write_video(tmp_path / "videos" / f"video{i:05d}.gif", rng.integers(0, 255, (5, 16, 48, 3), dtype=np.uint8))
    out = tmp_path / "fig.gif"
    assert figure_main([str(tmp_path), "--out", str(out), "--videos", "2", "--scale", "2"]) == 0
    with Image.open(out) as gif:
        assert gif.n_frames == 5
        # two 16-pixel rows and a 2-pixel gap, doubled, under the 12-pixel header
        assert gif.size == (96, 12 + 2 * (16 + 2 + 16))
    import pytest
    with pytest.raises(SystemExit, match="KB"):
        figure_main([str(tmp_path), "--out", str(tmp_path / "big.gif"), "--scale", "8", "--max_kb", "1"])
    assert not (tmp_path / "big.gif").exists()


def test_the_readme_has_every_block_the_reproduction_writes():
    """reproduce_shapes.sh fills README blocks only after hours of training: a missing marker must
    fail here, not at the end of the run."""
    script = (REPO / "scripts/reproduce_shapes.sh").read_text()
    blocks = re.findall(r'--doc "\$README" --block (\S+)', script)
    assert blocks, "reproduce_shapes.sh writes no README block any more: update this test"
    readme = (REPO / "README.md").read_text()
    for name in blocks:
        assert f"<!-- {name}:start -->" in readme and f"<!-- {name}:end -->" in readme, name
