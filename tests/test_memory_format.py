"""models/memory_format.py and the inference layout of what tools/pretrained.py loads."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from models.memory_format import for_inference, to_memory_format
from models.moso import MosoConfig, MosoVQVAE
from tools.pretrained import inference_layout

CL = {4: torch.channels_last, 5: torch.channels_last_3d}


def layouts(module: nn.Module) -> set[str]:
    """Layouts of the module's 4-D/5-D parameters: ``channels_last`` and/or ``contiguous``."""
    return {"channels_last" if p.is_contiguous(memory_format=CL[p.dim()]) else "contiguous"
            for p in module.parameters() if p.dim() in CL}


def test_to_memory_format_round_trip_keeps_values_and_state_dict():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.Linear(4, 4))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert to_memory_format(net, "channels_last") is net and layouts(net) == {"channels_last"}
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    nn.Sequential(nn.Conv3d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.Linear(4, 4)).load_state_dict(net.state_dict())
    to_memory_format(net, "contiguous")
    assert layouts(net) == {"contiguous"} and all(p.is_contiguous() for p in net.parameters())
    with pytest.raises(ValueError, match="layout"):
        to_memory_format(net, "nhwc")


def test_inference_layout_converts_a_module_or_the_modules_a_predictor_holds():
    class Holder:
        def __init__(self) -> None:
            self.net, self.other, self.number = nn.Conv3d(2, 2, 3), nn.Conv2d(2, 2, 3), 3

    holder = Holder()
    assert inference_layout(holder) is holder
    assert layouts(holder.net) == layouts(holder.other) == {"channels_last"}
    assert layouts(inference_layout(nn.Conv2d(2, 2, 3))) == {"channels_last"}


def test_first_stage_in_the_inference_layout_gives_the_same_codes_and_close_frames():
    torch.manual_seed(0)
    cfg = MosoConfig(hidden=16, res_depth=1, attn_heads=2, codebook_size=64, code_dim=4, merge="warp")
    plain = MosoVQVAE(cfg, frames=8, resolution=32).eval()
    fast = MosoVQVAE(cfg, frames=8, resolution=32).eval()
    fast.load_state_dict(plain.state_dict())
    for_inference(fast)
    assert layouts(fast) == {"channels_last"}
    video = torch.rand(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        a, b = plain.encode(video), fast.encode(video)
        for k in a["indices"]:
            assert torch.equal(a["indices"][k], b["indices"][k]) and torch.equal(a["codes"][k], b["codes"][k])
        torch.testing.assert_close(fast.decode(b["codes"]), plain.decode(a["codes"]), rtol=1e-4, atol=1e-5)


def test_loaded_first_stage_and_predictor_are_in_the_inference_layout(first_stage_run, tmp_path):
    from tools.pretrained import load_first_stage

    trained = load_first_stage(first_stage_run / "model_last.pth")
    assert layouts(trained.model) == {"channels_last"}
    import main
    from tests.tiny_configs import TINY_DDPM
    from tools.pretrained import load_predictor

    results = tmp_path / "results"
    assert main.main(["--exp", "ddpm", "--first_model", str(first_stage_run / "model_last.pth"),
                      f"results_dir={results}", "--id", "layout", *TINY_DDPM, "data.shapes.num_test=3",
                      "train.max_steps=1", "train.sample_every=0"]) == 0
    predictor, _ = load_predictor(results / "ddpm_layout_shapes_42" / "model_last.pth", torch.device("cpu"))
    assert layouts(predictor.net) == layouts(predictor.space) == {"channels_last"}


@pytest.mark.parametrize("method", ["pvdm", "lvdm"])
def test_loaded_baseline_predictor_is_in_the_inference_layout(method, tmp_path):
    """PVDM's and LVDM's autoencoders and denoisers, as tools.pretrained loads them for sampling, are
    channels-last; LVDM's 3D convolutions (replicate padding included) are the oneDNN ones."""
    import main
    from models.fast_conv import Conv3d
    from tools.pretrained import load_predictor

    if method == "pvdm":
        from tests.test_pvdm_pipeline import TINY_PVDM as FS, TINY_PVDM_DDPM as DDPM
    else:
        from tests.test_lvdm_pipeline import TINY_LVDM as FS, TINY_LVDM_DDPM as DDPM
    assert main.main(["--exp", "first_stage", "--id", "fs", f"results_dir={tmp_path}", "train.max_steps=1",
                      "train.sample_every=0", *FS]) == 0
    first = tmp_path / "first_stage_fs_shapes_42" / "model_last.pth"
    assert main.main(["--exp", "ddpm", "--first_model", str(first), f"results_dir={tmp_path}", "--id", "dd", *DDPM,
                      "data.shapes.num_test=3", "train.max_steps=1", "train.sample_every=0"]) == 0
    predictor, _ = load_predictor(tmp_path / "ddpm_dd_shapes_42" / "model_last.pth", torch.device("cpu"))
    assert layouts(predictor.net) == layouts(predictor.space.first_stage) == {"channels_last"}
    convs = [m for m in [*predictor.net.modules(), *predictor.space.modules()] if isinstance(m, nn.Conv3d)]
    assert all(isinstance(m, Conv3d) for m in convs) and (method == "pvdm" or convs)
