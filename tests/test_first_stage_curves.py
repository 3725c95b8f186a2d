"""scripts/first_stage_curves.py: held-out curves of runs side by side, into a named doc block."""
import json

import pytest

from scripts.first_stage_curves import main as curves


def write_run(folder, records):
    folder.mkdir()
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")


def test_runs_side_by_side_in_a_named_block(tmp_path, capsys):
    sample = {"decomp/temporal_variance_ratio": 0.25, "decomp/other_motion_psnr": 21.5}
    write_run(tmp_path / "a", [{"step": 50, "loss": 1.0}, {"step": 250, "eval/psnr": 22.456, **sample},
                               {"step": 250, "eval/psnr": 22.5, **sample}])  # a resumed run: the last record counts
    write_run(tmp_path / "b", [{"step": 250, "eval/psnr": 23.0, **sample}, {"step": 500, "eval/psnr": 24.0, **sample}])
    doc = tmp_path / "doc.md"
    doc.write_text("x\n<!-- curves64:start -->\n<!-- curves64:end -->\ny\n")
    assert curves([f"A={tmp_path / 'a'}", f"B={tmp_path / 'b'}", "--doc", str(doc), "--block", "curves64"]) == 0
    text = doc.read_text()
    assert "| 250 | 22.50 | 0.250 | 21.50 | 23.00 | 0.250 | 21.50 |" in text
    assert "| 500 | – | – | – | 24.00 | 0.250 | 21.50 |" in text
    assert text.startswith("x\n") and text.endswith("y\n") and "A: PSNR" in capsys.readouterr().out


def test_a_folder_without_metrics_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        curves([f"A={tmp_path}"])
    assert exit_info.value.code == 2
