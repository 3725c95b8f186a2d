"""scripts/motion_resolution_table.py: the FIRST_STAGE.md block comes from the runs' files."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.motion_resolution_table import main  # noqa: E402


def run_folder(root: Path, recon: float, s2_psnr: float, seconds: float) -> Path:
    (root / "validate_s2").mkdir(parents=True)
    report = dict(recon_psnr=recon, temporal_variance_ratio=0.5, other_motion_psnr=22.0, ceiling_psnr=recon - 0.1,
                  copy_last_psnr=21.0)
    (root / "first_stage_report32.json").write_text(json.dumps(report))
    summary = {"psnr": s2_psnr, "ssim": 0.75, "st_lpips": 0.15}
    (root / "validate_s2" / "metrics.json").write_text(json.dumps({"model": {"summary": summary}}))
    (root / "s2_step_time.txt").write_text(f"{seconds}\n")
    return root


def test_the_block_holds_both_runs_and_the_step_time_ratio(tmp_path):
    shipped = run_folder(tmp_path / "a", 26.3, 23.1, 0.3)
    dm1 = run_folder(tmp_path / "b", 27.0, 23.3, 1.2)
    doc = tmp_path / "doc.md"
    doc.write_text("before\n<!-- motion-resolution:start -->\nold\n<!-- motion-resolution:end -->\nafter\n")
    assert main(["--shipped", str(shipped), "--dm1", str(dm1), "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert "old" not in text and text.startswith("before") and text.rstrip().endswith("after")
    assert "| 26.30 |" in text and "| 27.00 |" in text and "| 23.30 |" in text
    assert "takes 4.0x as long" in text


def test_a_further_variant_gets_its_row_and_step_time_and_a_missing_file_is_exit_2(tmp_path):
    shipped = run_folder(tmp_path / "a", 26.3, 23.1, 0.3)
    dm1 = run_folder(tmp_path / "b", 27.0, 23.3, 1.2)
    keys = run_folder(tmp_path / "c", 26.8, 23.4, 0.33)
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- motion-resolution:start -->\n<!-- motion-resolution:end -->\n")
    assert main(["--shipped", str(shipped), "--dm1", str(dm1), "--row", f"keys={keys}", "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert "| keys | 26.80 |" in text and "on those of keys, 1.1x" in text
    (keys / "s2_step_time.txt").unlink()
    with pytest.raises(SystemExit) as exit_info:
        main(["--shipped", str(shipped), "--dm1", str(dm1), "--row", f"keys={keys}"])
    assert exit_info.value.code == 2
