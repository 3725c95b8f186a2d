"""scripts/bench.py: training-step FLOPs and ratios, sampling latency/memory, the JSON it writes."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import bench  # noqa: E402

from tests.tiny_configs import TINY_DDPM  # noqa: E402
from tiny_configs import TINY  # noqa: E402

FS_CONFIG, DDPM_CONFIG = bench.QUICK_SETUPS["64"]["first_stage"], bench.QUICK_SETUPS["64"]["ddpm"]
CPU = torch.device("cpu")
TINY_FS = [o for o in TINY if not o.startswith("train.batch_size")] + ["train.batch_size=1"]


@pytest.fixture(scope="module")
def tiny_first_model(tmp_path_factory):
    return bench.untrained_first_stage(bench.ROOT / FS_CONFIG, tmp_path_factory.mktemp("first_model") / "first.pth",
                                       [*bench.COMMON_OVERRIDES["first_stage"], *TINY_FS])


def ddpm_config(first_model, *extra):
    return bench.run_config("ddpm", DDPM_CONFIG, [*TINY_DDPM, "model.unet.channels=8", f"first_model={first_model}",
                                                   *extra])


def test_matmul_rate_is_positive():
    assert bench.matmul_flops_per_s(CPU, torch.float32, 64, min_seconds=0.01) > 0


def test_first_stage_rows_count_flops_time_and_memory(tmp_path):
    base = [*bench.COMMON_OVERRIDES["first_stage"], *TINY_FS]
    configs = {"base": bench.run_config("first_stage", FS_CONFIG, base),
               "channels_last": bench.run_config("first_stage", FS_CONFIG, [*base, "train.channels_last=true"])}
    rows = bench.bench_train(configs, CPU, tmp_path, steps=1, matmul_size=64, burst_s=0.01)
    assert [r["variant"] for r in rows] == ["base", "channels_last"]
    for row in rows:
        assert row["flops_per_step"] == rows[0]["flops_per_step"] > 0
        # ratio > 0 only: a 64x64 matmul burst on a loaded machine makes any upper bound flaky
        assert row["ratio"] > 0 and math.isfinite(row["ratio"]) and math.isfinite(row["ratio_median"])
        assert row["achieved_flops_per_s"] == pytest.approx(row["flops_per_step"] / row["step_s"])
        assert row["peak_memory_bytes"] > 0 and row["peak_memory_kind"] == "live tensor storages"
        assert (row["exp"], row["batch_size"], row["resolution"], row["frames"]) == ("first_stage", 1, 32, 4)


def test_ddpm_token_step_flops_grow_with_batch(tiny_first_model, tmp_path):
    flops = {}
    for batch in (1, 2):
        cfg = ddpm_config(tiny_first_model, f"train.batch_size={batch}")
        row, = bench.bench_train({"base": cfg}, CPU, tmp_path / str(batch), use_tokens=True, steps=1,
                                 matmul_size=64, burst_s=0.01)
        assert row["input"] == "tokens" and row["exp"] == "ddpm" and math.isfinite(row["ratio"])
        flops[batch] = row["flops_per_step"]
    assert flops[2] == pytest.approx(2 * flops[1], rel=0.05)  # per-sample work; the optimizer is not counted


# Substrings of the aten operators that multiply matrices (products, convolutions, attention).
MATMUL_LIKE = ("mm", "mv", "dot", "matmul", "linear", "einsum", "conv", "attention", "cdist")


def test_no_matrix_operator_of_the_steps_goes_uncounted(tiny_first_model, tmp_path, monkeypatch):
    """Every operator of the first-stage and DDPM steps that multiplies matrices has a FLOP
    formula: the CPU attention kernels (forward and backward) among them (tools/flops.py)."""
    seen: dict[str, bool] = {}
    count = FlopCounterMode._count_flops

    def recording(self, packet, out, args, kwargs):
        seen.setdefault(str(packet), packet in self.flop_registry)
        return count(self, packet, out, args, kwargs)

    monkeypatch.setattr(FlopCounterMode, "_count_flops", recording)
    fs = bench.run_config("first_stage", FS_CONFIG, [*bench.COMMON_OVERRIDES["first_stage"], *TINY_FS])
    for runner in (bench.StepRunner("fs", fs, CPU, tmp_path / "fs", use_tokens=False),
                   bench.StepRunner("ddpm", ddpm_config(tiny_first_model), CPU, tmp_path / "ddpm", use_tokens=True)):
        runner.counted_step(count_flops=True)
    assert [op for op, counted in seen.items() if not counted and any(w in op for w in MATMUL_LIKE)] == []
    assert seen["aten._scaled_dot_product_flash_attention_for_cpu"]
    assert seen["aten._scaled_dot_product_flash_attention_for_cpu_backward"]
    assert seen["aten.convolution"] and seen["aten.convolution_backward"]


def test_sampling_rows(tiny_first_model, tmp_path):
    trainer = bench.build_trainer(ddpm_config(tiny_first_model), CPU, tmp_path)
    rows = bench.bench_sampling(trainer, CPU, ["dpm", "ddim"], [1, 3])
    assert [(r["sampler"], r["steps"]) for r in rows] == [("dpm", 1), ("dpm", 3), ("ddim", 1), ("ddim", 3)]
    weights = sum(p.numel() * 4 for p in trainer.ctx.eval_net("model").parameters())
    for row in rows:
        assert row["latency_s"] > 0 and row["peak_memory_bytes"] > weights
        assert row["frames"] == 4 and row["resolution"] == 32
        assert min(row["flops_encode"], row["flops_decode"], row["flops_per_denoiser_step"]) > 0
        assert row["flops"] == row["flops_encode"] + row["flops_decode"] + row["steps"] * row["flops_per_denoiser_step"]


def test_cli_writes_json_and_ends_with_the_ddpm_ratio(tmp_path, capsys):
    out = tmp_path / "bench.json"
    fs = [f"--fs_override={o}" for o in TINY_FS]
    dd = [f"--ddpm_override={o}" for o in [*TINY_DDPM, "model.unet.channels=8", "train.batch_size=1"]]
    assert bench.main(["--quick", "--device", "cpu", "--sections", "train,sample", "--steps", "1",
                       "--matmul_size", "64", "--out", str(out), *fs, *dd]) == 0
    results = json.loads(out.read_text())
    assert {"date", "command", "device", "train", "sampling", "summary", "notes"} <= set(results)
    assert results["device"]["type"] == "cpu" and results["device"]["name"]
    assert [(r["exp"], r["input"]) for r in results["train"]] == [("first_stage", "clips"), ("ddpm", "tokens")]
    assert set(results["summary"]) == {"first_stage_32_ratio", "ddpm_32_ratio"}
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("DDPM training step") and "% of dense matmul" in last


def test_variants_that_do_not_apply_are_skipped_with_a_note():
    notes = []
    configs = bench.variant_configs("first_stage", FS_CONFIG, bench.COMMON_OVERRIDES["first_stage"],
                                    [bench.parse_variant("ckpt:model.unet.checkpointing=true"),
                                     bench.parse_variant("bf16:train.precision=bf16")], notes)
    assert list(configs) == ["base", "bf16"] and "ckpt" in notes[0]
    with pytest.raises(Exception, match="NAME:key=value"):
        bench.parse_variant("no-overrides")


@pytest.mark.slow
def test_quick_cli_run(tmp_path):
    out = tmp_path / "bench_quick.json"
    proc = subprocess.run([sys.executable, "scripts/bench.py", "--quick", "--device", "cpu", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("DDPM training step")
    results = json.loads(out.read_text())
    assert results["data"]["speedup"] and results["sampling"] and len(results["train"]) == 2


def test_sampling_baseline_path_is_timed_beside_the_default(tiny_first_model, tmp_path):
    trainer = bench.build_trainer(ddpm_config(tiny_first_model), CPU, tmp_path)
    paths = bench.sampling_paths(trainer.task, trainer.ctx.eval_net("model"), ["baseline"])
    default, baseline = (p.predictor for p in paths)
    assert default.space.first_stage.cfg.chunk_frames > 0 and baseline.space.first_stage.cfg.chunk_frames == 0
    conv = next(p for p in default.net.parameters() if p.dim() == 5)
    assert conv.is_contiguous(memory_format=torch.channels_last_3d) and not conv.is_contiguous()
    assert all(p.is_contiguous() for p in [*baseline.net.parameters(), *baseline.space.parameters()])
    rows = bench.bench_sampling(trainer, CPU, ["dpm"], [2], variants=["baseline"])
    assert [r["variant"] for r in rows] == ["default", "baseline"]
    assert rows[0]["max_abs_diff_vs_default"] == 0 and rows[1]["max_abs_diff_vs_default"] < 1e-3
    assert all(r["peak_memory_bytes"] > 0 and r["latency_s"] > 0 for r in rows)
    results = {"sampling": rows, "train": [], "command": "python scripts/bench.py", "date": "today",
               "device": bench.device_info(CPU)}
    summary = bench.summary(results)
    assert summary["sampling_32_dpm_2_speedup_vs_baseline"] == pytest.approx(rows[1]["latency_s"] / rows[0]["latency_s"])
    text = bench.targets_markdown(results)
    assert "| baseline | 32 | dpm | 2 |" in text and "as fast as the baseline (target >= 1.4x" in text
    with pytest.raises(ValueError, match="baseline"):
        bench.sampling_paths(trainer.task, trainer.ctx.eval_net("model"), ["fastest"])


def test_sampling_bf16_path_runs_the_default_predictor_under_autocast(tiny_first_model, tmp_path):
    trainer = bench.build_trainer(ddpm_config(tiny_first_model), CPU, tmp_path)
    rows = bench.bench_sampling(trainer, CPU, ["dpm"], [2], variants=["baseline", "bf16"], track_memory=False)
    assert [(r["variant"], r["precision"]) for r in rows] == [("default", "auto"), ("baseline", "auto"), ("bf16", "bf16")]
    # bf16 rounding moves the frames, but not far: a path that ignored the autocast would give 0
    assert 0 < rows[2]["max_abs_diff_vs_default"] < 0.5
    results = {"sampling": rows, "train": [], "command": "python scripts/bench.py", "date": "today",
               "device": bench.device_info(CPU)}
    text = bench.targets_markdown(results)
    assert "| bf16 | 32 | dpm | 2 |" in text and "Under bf16 autocast" in text


def method_args() -> list[str]:
    """Tiny PVDM and LVDM configs for ``--methods`` (the sizes of their pipeline tests)."""
    from tests.test_lvdm_pipeline import TINY_LVDM, TINY_LVDM_DDPM
    from tests.test_pvdm_pipeline import TINY_PVDM, TINY_PVDM_DDPM

    args = []
    lvdm_fs = [*TINY_LVDM, "model.lvdm.downsample=[2,4,4]"]  # shapes64's time factor 4 > the 2 observed frames
    for method, fs, ddpm in (("pvdm", TINY_PVDM, TINY_PVDM_DDPM), ("lvdm", lvdm_fs, TINY_LVDM_DDPM)):
        args += [f"--method_fs_override={method}:{o}" for o in fs[2:]]  # [2:]: past "--config PATH"
        args += [f"--method_override={method}:{o}" for o in ddpm[2:] if not o.startswith("train.batch_size")]
    return args


def test_methods_are_timed_beside_rsvp_in_one_run(tmp_path):
    """--methods rsvp,pvdm,lvdm: the baselines' DDPM training steps (from clips) and predictions in the
    same run, their sampling round-robin with RSVP's paths; summary ratios and the doc block."""
    out, doc = tmp_path / "bench.json", tmp_path / "doc.md"
    doc.write_text("x\n<!-- bench-targets:start -->\n<!-- bench-targets:end -->\n")
    fs = [f"--fs_override={o}" for o in TINY_FS]
    dd = [f"--ddpm_override={o}" for o in [*TINY_DDPM, "model.unet.channels=8", "train.batch_size=1"]]
    assert bench.main(["--quick", "--device", "cpu", "--sections", "train,sample", "--steps", "1", "--samplers", "dpm", "--sample_steps", "2",
                       "--matmul_size", "64", "--out", str(out), "--methods", "rsvp,pvdm,lvdm", "--baseline_batch", "1",
                       "--sample_variant", "baseline", "--doc", str(doc), *fs, *dd, *method_args()]) == 0
    results = json.loads(out.read_text())
    assert [(r["exp"], r.get("method"), r["input"]) for r in results["train"]] == [
        ("first_stage", None, "clips"), ("ddpm", None, "tokens"), ("ddpm", "pvdm", "clips"), ("ddpm", "lvdm", "clips")]
    assert [(r.get("method"), r["variant"]) for r in results["sampling"]] == [
        (None, "default"), (None, "baseline"), ("pvdm", "default"), ("lvdm", "default")]
    for row in results["sampling"]:
        assert row["latency_s"] > 0 and row["peak_memory_bytes"] > 0 and row["resolution"] == 32
        assert row["flops"] == row["flops_encode"] + row["flops_decode"] + 2 * row["flops_per_denoiser_step"]
        assert min(row["flops_encode"], row["flops_decode"], row["flops_per_denoiser_step"]) > 0
    lvdm = results["sampling"][-1]
    assert (lvdm["cond_frames"], lvdm["frames"], lvdm["max_abs_diff_vs_default"]) == (2, 4, 0)
    summary = results["summary"]
    for method in ("pvdm", "lvdm"):
        assert summary[f"sampling_32_dpm_2_rsvp_vs_{method}_speedup"] > 0
        assert summary[f"train_32_rsvp_vs_{method}_speedup_per_clip"] > 0 and summary[f"{method}_32_ratio"] > 0
    assert "ddpm_32_ratio" in summary and "sampling_32_dpm_2_speedup_vs_baseline" in summary
    text = doc.read_text()
    assert "| PVDM | 32 | dpm | 2 |" in text and "| LVDM | 32 | clips | 1 |" in text
    assert "RSVP's default path is" not in text and "RSVP / PVDM latency" in text and "RSVP / LVDM =" in text
    assert "as fast as the baseline (target >= 1.4x" in text


def test_methods_and_their_overrides_are_checked():
    assert bench.parse_methods("rsvp,lvdm") == ["rsvp", "lvdm"]
    with pytest.raises(ValueError, match="--methods"):
        bench.parse_methods("rsvp,tubelet")
    assert bench.method_overrides(["pvdm:a=1", "lvdm:b=2"], "pvdm") == ["a=1"]
    with pytest.raises(ValueError, match="METHOD:key=value"):
        bench.method_overrides(["a=1"], "pvdm")
