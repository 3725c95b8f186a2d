"""scripts/warp_oracle.py: the best-offset ceiling of a warp reproduces a shifted frame exactly."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from warp_oracle import best_offset_frames  # noqa: E402


def test_a_clip_of_shifted_anchors_is_rebuilt_exactly_and_odd_shifts_need_unit_steps():
    anchor = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(anchor, (3, 3, 3, 3), mode="replicate")
    # frame t shows the anchor's content moved left by t + 1 pixels (pixel (y, x) <- anchor (y, x + t + 1))
    video = torch.stack([padded[:, :, 3:15, 4 + t:16 + t] for t in range(3)], dim=2)
    exact = best_offset_frames(video, anchor, reach=3, step=1, cell=1)
    assert torch.equal(exact, video)
    even = best_offset_frames(video, anchor, reach=3, step=2, cell=1)
    assert torch.equal(even[:, :, 1], video[:, :, 1])  # a 2-pixel shift is reachable with even steps
    assert not torch.equal(even[:, :, 0], video[:, :, 0])  # a 1-pixel shift is not


def test_settings_parse_and_bad_settings_exit_2_with_one_line(capsys):
    from warp_oracle import main, parse_settings

    assert parse_settings("8:4, 4:1") == [(8, 4), (4, 1)]
    for bad in ("8", "8:0", "a:1", "4:2,"):
        with pytest.raises(SystemExit) as exc:
            main(["--settings", bad])
        assert exc.value.code == 2
        assert "error: expected CELL:STEP" in capsys.readouterr().err.strip().splitlines()[-1]


def test_table_scores_psnr_and_temporal_variance_into_a_named_block(tmp_path, capsys):
    from warp_oracle import main

    doc = tmp_path / "doc.md"
    doc.write_text("a\n<!-- oracle:start -->\n<!-- oracle:end -->\nb\n")
    assert main(["--num_clips", "2", "--reach", "2", "--settings", "4:2", "--doc", str(doc), "--block", "oracle"]) == 0
    rows = [line.split(" | ") for line in doc.read_text().splitlines() if line.startswith("| ") and "PSNR" not in line]
    assert [r[0] for r in rows] == ["| 4x4", "| (no move: the anchor frame)"]
    assert rows[1][-1] == "0.000 |"  # the anchor repeated does not vary over time
    assert float(rows[0][-1].rstrip(" |")) > 0 and float(rows[0][2]) >= float(rows[1][2])  # offset 0 is a choice
