"""scripts/long_horizon.py: curves of several methods' rollouts, one baseline, one protocol."""
from __future__ import annotations

import json

import pytest

from scripts.long_horizon import horizons, main


def metrics(psnr: list[float], base: list[float], ceiling: list[float], videos: int = 8) -> dict:
    curve = lambda v: {"psnr": {"mean": v, "best_of_n": v}, "horizon": list(range(1, len(v) + 1))}  # noqa: E731
    return {"model": {"curves": curve(psnr)}, "copy_last_frame": {"curves": curve(base)},
            "first_stage_ceiling": {"curves": curve(ceiling)},
            "settings": {"num_videos": videos, "num_samples": 1, "cond_frames": 4, "pred_frames": len(psnr),
                         "seed": 0, "data": {"name": "shapes", "resolution": 32}}}


def test_horizons_cover_first_and_each_quarter():
    assert horizons(32) == [1, 8, 16, 24, 32] and horizons(3) == [1, 2, 3]


def test_table_and_plot(tmp_path, capsys):
    base = [20.0 - i for i in range(8)]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(metrics([21.0 - 0.5 * i for i in range(8)], base, [25.0] * 8)))
    b.write_text(json.dumps(metrics([19.0] * 8, base, [22.0] * 8)))
    out = tmp_path / "lh.json"
    assert main([f"A={a}", f"B={b}", "--json", str(out), "--png", str(tmp_path / "lh.png")]) == 0
    result = json.loads(out.read_text())
    assert set(result["curves"]) == {"copy last frame", "A", "B", "first-stage ceiling of A",
                                     "first-stage ceiling of B"}
    assert result["table"]["psnr"]["A"] == {"1": 21.0, "2": 20.5, "4": 19.5, "6": 18.5, "8": 17.5}
    assert result["table"]["psnr"]["copy last frame"]["8"] == 13.0
    printed = capsys.readouterr().out
    assert "| A | 21.0000 | 20.5000 | 19.5000 | 18.5000 | 17.5000 |" in printed and "![long-horizon curves](lh.png)" in printed
    assert (tmp_path / "lh.png").stat().st_size > 0


def test_methods_on_one_first_stage_share_one_ceiling_curve(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(metrics([1.0] * 4, [2.0] * 4, [3.0] * 4)))
    b.write_text(json.dumps(metrics([1.5] * 4, [2.0] * 4, [3.0] * 4)))
    assert main([f"A={a}", f"B={b}", "--json", str(tmp_path / "x.json")]) == 0
    curves = json.loads((tmp_path / "x.json").read_text())["curves"]
    assert [k for k in curves if "ceiling" in k] == ["first-stage ceiling of A, B"]


def test_runs_under_different_protocols_are_refused(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(metrics([1.0] * 4, [1.0] * 4, [1.0] * 4, videos=8)))
    b.write_text(json.dumps(metrics([1.0] * 4, [1.0] * 4, [1.0] * 4, videos=16)))
    with pytest.raises(SystemExit, match="one protocol"):
        main([f"A={a}", f"B={b}", "--json", str(tmp_path / "x.json")])
