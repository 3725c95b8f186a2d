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
