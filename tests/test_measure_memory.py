"""scripts/measure_memory.py: the fake-tensor estimate equals the same accounting on a real step."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from measure_memory import measure  # noqa: E402

from tiny_configs import TINY  # noqa: E402

CONFIG = "configs/first_stage/moso_shapes64.yaml"
SMALL = [o for o in TINY if not o.startswith("train.batch_size")] + ["model.vqvae.dead_code_threshold=0"]


@pytest.mark.parametrize("exp", ["first_stage", pytest.param("gan", marks=pytest.mark.slow)])
def test_fake_estimate_matches_real_step(exp):
    fake = measure(exp, CONFIG, 2, "fp32", SMALL, fake=True)
    real = measure(exp, CONFIG, 2, "fp32", SMALL, fake=False)
    assert fake["peak_gib"] > fake["weights_and_optimizer_gib"] > 0
    assert fake["peak_gib"] == pytest.approx(real["peak_gib"], rel=0.02)
    assert fake["weights_and_optimizer_gib"] == pytest.approx(real["weights_and_optimizer_gib"], rel=0.02)


def test_activation_memory_is_linear_in_batch():
    peak = {b: measure("first_stage", CONFIG, b, "bf16", SMALL)["peak_bytes"] for b in (1, 2, 4)}
    # the fake-tensor set-up's process-wide flag does not outlive the measurement
    assert torch.__future__.get_overwrite_module_params_on_conversion() is False
    per_clip = peak[2] - peak[1]
    assert per_clip > 0
    # Three more clips cost about three times one more clip (where the peak falls shifts a little).
    assert 2 * per_clip < peak[4] - peak[1] < 4 * per_clip

