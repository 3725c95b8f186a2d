"""scripts/quickstart.sh runs every stage end to end and, run again, reuses what is finished.

Tiny step counts (the script's own configs, a few steps each) so that it runs in the default suite.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _quickstart(out: Path) -> str:
    env = {**os.environ, "VIRTUAL_ENV": sys.prefix, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "OUT": str(out), "FS_STEPS": "2", "GAN_STEPS": "2", "NUM_TOKENS": "8", "DDPM_STEPS": "2",
           "NUM_VIDEOS": "2", "NUM_SAMPLES": "1", "DEVICE": "cpu"}
    done = subprocess.run(["bash", "scripts/quickstart.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def test_quickstart_end_to_end_then_reuses_finished_stages(tmp_path):
    out = tmp_path / "qs"
    first = _quickstart(out)
    metrics = json.loads((out / "validate" / "metrics.json").read_text())
    assert metrics["settings"]["num_videos"] == 2 and metrics["settings"]["cond_frames"] == 4
    assert {"model", "copy_last_frame", "first_stage_ceiling"} <= metrics.keys()
    assert len(list((out / "validate" / "videos").glob("*.gif"))) == 2 and (out / "overview.gif").is_file()
    assert "| copy last frame (baseline) |" in first and "| RSVP-S2 (quickstart) |" in first
    assert "LPIPS" in first and "Total time:" in first

    second = _quickstart(out)
    assert second.count("nothing to do") == 3  # first stage, GAN, DDPM
    assert "all 1 shards already done" in second and "reusing" in second
    assert json.loads((out / "validate" / "metrics.json").read_text()) == metrics
