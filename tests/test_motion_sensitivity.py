"""scripts/motion_sensitivity.py: the check that a first stage's decoder uses its motion tokens."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from motion_sensitivity import main as sensitivity  # noqa: E402


def test_motion_sensitivity_script_runs(first_stage_run, capsys):
    assert sensitivity(["--first_model", str(first_stage_run / "model_last.pth"), "--cond_frames", "2",
                        "--num_clips", "2"]) == 0
    out = capsys.readouterr().out
    assert "random codebook motion" in out and "(copy last frame)" in out
