"""scripts/bench.py --sections ar: the tubelet transformer's sampling latency with and without its KV cache."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import bench  # noqa: E402

TINY_FS = ["model.tubelet.channels=8", "model.tubelet.res_blocks=1", "model.tubelet.pixel_channels=4",
           "model.perceptual.frames=1"]
TINY_AR = ["model.transformer.dim=16", "model.transformer.depth=1", "model.transformer.heads=2"]


def test_ar_section_times_the_cache_against_recomputation(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["--sections", "ar", "--device", "cpu", "--ar_frames", "2,6", "--sample_repeats", "1", "--out", str(out),
            *[f"--ar_override={o}" for o in TINY_AR], *[f"--ar_fs_override={o}" for o in TINY_FS]]
    assert bench.main(argv) == 0
    results = json.loads(out.read_text())
    rows = results["ar_sampling"]
    assert [(r["variant"], r["pred_frames"]) for r in rows] == [("kv_cache", 2), ("recompute", 2), ("kv_cache", 6),
                                                                ("recompute", 6)]
    assert rows[2]["tokens_sampled"] == 3 * 64 and all(r["latency_s"] > 0 and r["same_frames"] for r in rows)
    assert results["summary"]["ar_32_6_kv_cache_speedup"] == rows[2]["speedup_of_cache"]
    assert results["train"] == [] and "autoregressive sampling" in capsys.readouterr().out
