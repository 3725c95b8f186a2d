"""scripts/first_stage_table.py: first-stage reports side by side, into a named doc block."""
import json

import pytest

from scripts.first_stage_table import COLUMNS
from scripts.first_stage_table import main as table


def write_report(path, recon, **extra):
    report = {"checkpoint": f"runs/{path.stem}/model_last.pth", "num_clips": 64, "frames": 8, "resolution": 32,
              "cond_frames": 4, **{key: 0.5 for key, _, _ in COLUMNS}, "recon_psnr": recon, **extra}
    path.write_text(json.dumps(report))
    return path


def test_reports_side_by_side_in_a_named_block(tmp_path, capsys):
    a, b = write_report(tmp_path / "a.json", 26.321), write_report(tmp_path / "b.json", 27.5)
    doc = tmp_path / "doc.md"
    doc.write_text("x\n<!-- keys:start -->\nold\n<!-- keys:end -->\ny\n")
    assert table([f"shipped={a}", f"keys={b}", "--doc", str(doc), "--block", "keys"]) == 0
    text = doc.read_text()
    assert "64 test clips, 8 frames at 32x32" in text and "old" not in text
    assert "| shipped | 26.32 | 0.50 | 0.500 |" in text and "| keys | 27.50 |" in text
    assert "`runs/b/model_last.pth`" in text and text.endswith("y\n")
    assert "| keys | 27.50 |" in capsys.readouterr().out
    c, d = write_report(tmp_path / "c.json", 26.0, first_clip=64), write_report(tmp_path / "d.json", 27.0, first_clip=64)
    assert table([f"c={c}", f"d={d}"]) == 0
    assert "64 test clips (clips 64-127), 8 frames at 32x32" in capsys.readouterr().out


@pytest.mark.parametrize("make_args", [
    lambda tmp: [f"a={write_report(tmp / 'a.json', 26.0)}", f"b={write_report(tmp / 'b.json', 26.0, num_clips=8)}"],
    lambda tmp: [f"a={write_report(tmp / 'a.json', 26.0)}", f"b={write_report(tmp / 'b.json', 26.0, first_clip=64)}"],
    lambda tmp: [f"a={tmp / 'missing.json'}"],
    lambda tmp: ["no-label-here"],
    lambda tmp: [f"a={write_report(tmp / 'a.json', 26.0)}", "--doc", str(tmp / "nodoc.md")],
])
def test_bad_input_is_a_usage_error(tmp_path, make_args):
    with pytest.raises(SystemExit) as exit_info:
        table(make_args(tmp_path))
    assert exit_info.value.code == 2
