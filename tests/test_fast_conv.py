"""models/fast_conv.py: oneDNN 3D convolutions on the CPU at batch 1, equal to PyTorch's own path."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from models.fast_conv import Conv3d, plain_conv3d
from models.memory_format import to_channels_last
from models.unets.layers import conv_nd
from tools.flops import flop_counter

# (in, out, kernel, stride, padding) as the denoisers build them (conv_nd: 'same' padding).
LAYERS = [(8, 16, (3, 3, 3), 1, 1), (16, 16, (1, 3, 3), 1, (0, 1, 1)), (16, 16, (3, 3, 3), (1, 2, 2), 1),
          (16, 8, (1, 1, 1), 1, 0)]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pair(layer, seed: int = 0) -> tuple[Conv3d, nn.Conv3d]:
    """A fast conv and a plain ``nn.Conv3d`` with the same weights."""
    cin, cout, kernel, stride, padding = layer
    torch.manual_seed(seed)
    fast = Conv3d(cin, cout, kernel, stride=stride, padding=padding)
    plain = nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding)
    plain.load_state_dict(fast.state_dict())
    return fast, plain


def clip(batch: int, channels: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, channels, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


def kernels_run(fn) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages()}


def test_batch_one_takes_onednn_where_pytorch_takes_slow_conv3d():
    fast, plain = pair(LAYERS[0])
    x = clip(1, 8)
    with torch.no_grad():
        assert "aten::slow_conv3d_forward" in kernels_run(lambda: plain(x))
        ran = kernels_run(lambda: fast(x))
        assert "aten::mkldnn_convolution" in ran and "aten::slow_conv3d_forward" not in ran
        with plain_conv3d():
            assert "aten::slow_conv3d_forward" in kernels_run(lambda: fast(x))


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fp32_outputs_and_gradients_match_pytorch(layer, batch, channels_last):
    fast, plain = pair(layer)
    if channels_last:
        to_channels_last(fast)
    x = clip(batch, layer[0]).requires_grad_(True)
    out = fast(x)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = [x.grad.clone(), fast.weight.grad, fast.bias.grad]
    x.grad = None
    ref = plain(x)
    (ref * torch.linspace(-1, 1, ref.numel()).view_as(ref)).sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    for got, want in zip(grads, [x.grad, plain.weight.grad, plain.bias.grad]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layer", LAYERS[:2])
def test_bf16_autocast_is_pytorchs_own_path(layer):
    fast, plain = pair(layer)
    x = clip(1, layer[0])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out, ref = fast(x), plain(x)
    assert out.dtype == ref.dtype == torch.bfloat16
    assert torch.equal(out, ref)
    torch.testing.assert_close(out.float(), plain(x), rtol=0.05, atol=0.05)  # and close to fp32


def test_state_dict_is_nn_conv3d_s_and_conv_nd_builds_it():
    fast, plain = pair(LAYERS[0])
    assert list(fast.state_dict()) == list(plain.state_dict())
    plain.load_state_dict(fast.state_dict())
    assert isinstance(conv_nd(4, 4, (3, 3, 3)), Conv3d)
    assert type(conv_nd(4, 4, (3, 3))) is nn.Conv2d


def test_flops_are_counted_as_for_the_plain_path():
    fast, _ = pair(LAYERS[0])
    x = clip(1, 8).requires_grad_(True)
    counts = []
    for ctx in (plain_conv3d, torch.enable_grad):
        with ctx(), flop_counter() as counter:
            fast(x).sum().backward()
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] > 0


def test_fake_tensors_keep_pytorchs_path():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        conv = Conv3d(8, 16, 3, padding=1)
        out = conv(torch.empty(1, 8, 4, 8, 8))
        out.sum().backward()
    assert out.shape == (1, 16, 4, 8, 8) and conv.weight.grad.shape == conv.weight.shape


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("channels_last", [False, True])
def test_cuda_is_pytorchs_own_path(channels_last):
    fast, plain = (m.cuda() for m in pair(LAYERS[0]))
    if channels_last:
        to_channels_last(fast), to_channels_last(plain)
    x = clip(1, 8).cuda()
    with torch.no_grad():
        assert torch.equal(fast(x), plain(x))
        with torch.autocast("cuda", dtype=torch.bfloat16):
            assert torch.equal(fast(x), plain(x))


@pytest.mark.parametrize("batch", [1, 2])
def test_denoiser_matches_the_plain_path_in_fp32_and_bf16(batch):
    from test_unets import build, inputs  # the tiny RSVP-S2 of the denoiser tests

    net = build("rsvp_s2")
    x_t, t, cond = inputs(batch)
    cl = to_channels_last(build("rsvp_s2"))  # the layout validate.py samples in
    with torch.no_grad():
        with plain_conv3d():
            ref = net(x_t, t, cond)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                ref_bf16 = net(x_t, t, cond)
        torch.testing.assert_close(net(x_t, t, cond), ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(cl(x_t, t, cond), ref, rtol=1e-4, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(net(x_t, t, cond), ref_bf16)


@pytest.mark.parametrize("stride", [1, (1, 2, 2), 2])
@pytest.mark.parametrize("channels_last", [False, True])
def test_replicate_padding_takes_onednn_and_matches_pytorch(stride, channels_last):
    """LVDM's autoencoder pads by replicating the border: padded first, then oneDNN unpadded."""
    torch.manual_seed(0)
    fast = Conv3d(8, 16, 3, stride=stride, padding=1, padding_mode="replicate")
    plain = nn.Conv3d(8, 16, 3, stride=stride, padding=1, padding_mode="replicate")
    plain.load_state_dict(fast.state_dict())
    if channels_last:
        to_channels_last(fast)
    x = clip(1, 8).requires_grad_(True)
    with torch.no_grad():
        ran = kernels_run(lambda: fast(x))
        assert "aten::mkldnn_convolution" in ran and "aten::slow_conv3d_forward" not in ran
    out = fast(x)
    out.sum().backward()
    grad = x.grad.clone()
    x.grad = None
    ref = plain(x)
    ref.sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grad, x.grad, rtol=1e-4, atol=1e-4)


def test_lvdm_autoencoder_takes_onednn_and_matches_the_plain_path():
    from models.lvdm_autoencoder import LVDMAutoencoder
    from models.memory_format import for_inference

    torch.manual_seed(0)
    ae = LVDMAutoencoder({"frames": 4, "resolution": 16, "channels": 8, "max_mult": 2, "downsample": [2, 4, 4],
                          "norm_groups": 4}).eval()
    convs = [m for m in ae.modules() if isinstance(m, nn.Conv3d)]
    assert convs and all(isinstance(m, Conv3d) for m in convs)
    x = torch.rand(1, 3, 4, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        with plain_conv3d():
            ref = ae(x)
        assert "aten::slow_conv3d_forward" not in kernels_run(lambda: ae(x))
        torch.testing.assert_close(ae(x), ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(for_inference(ae)(x), ref, rtol=1e-4, atol=1e-5)
