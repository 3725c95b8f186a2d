"""LVDM's modules: autoencoder and U-Net shapes, factorized attention, conditional latent
perturbation, guidance, the training loss, and the hierarchy's frame bookkeeping (CPU, seconds)."""
from __future__ import annotations

import pytest
import torch

from models.diffusion import DiffusionConfig, GaussianDiffusion, GuidedDenoiser
from models.lvdm_autoencoder import LVDMAutoencoder, LVDMAutoencoderConfig, stage_strides
from models.lvdm_hierarchy import hierarchical_fill, plan_segments
from models.lvdm_predictor import LVDMObjectiveConfig, LVDMPredictor, VideoLatentSpace
from models.unets.lvdm_unet import AxisAttention, LVDMUNet, lvdm_training_loss, perturb

TINY_UNET = {"channels": 16, "channel_mults": [1, 2], "num_res_blocks": 1, "attn_levels": [0, 1], "attn_head_dim": 8,
             "max_relative": 4}


def randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Zero-initialised output layers would hide what an output depends on."""
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        torch.nn.init.normal_(p, std=0.1, generator=g)
    return module


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- autoencoder
@pytest.mark.parametrize("factors,latent", [([2, 4, 4], (4, 4, 8, 8)), ([1, 2, 4], (4, 8, 16, 8)),
                                            ([4, 8, 8], (4, 2, 4, 4))])
def test_autoencoder_shapes_and_range(factors, latent):
    ae = LVDMAutoencoder(LVDMAutoencoderConfig(frames=8, resolution=32, channels=8, downsample=factors))
    clip = rand(2, 3, 8, 32, 32).clamp(-1, 1)
    with torch.no_grad():
        z = ae.encode(clip)["codes"]
        out = ae.decode(z)
    assert tuple(z.shape[1:]) == latent == ae.latent_shape()
    assert out.shape == clip.shape and out.abs().max() <= 1
    assert stage_strides([2, 4, 4], 2) == [(2, 2, 2), (1, 2, 2)]


def test_autoencoder_takes_any_length_its_time_factor_divides_and_pads_by_repeating():
    ae = LVDMAutoencoder(LVDMAutoencoderConfig(frames=8, resolution=32, channels=8, downsample=[2, 4, 4]))
    assert ae.encode_latent(rand(1, 3, 4, 32, 32)).shape == (1, 4, 2, 8, 8)
    with pytest.raises(ValueError, match="not divisible"):
        ae.encode_latent(rand(1, 3, 5, 32, 32))
    convs = [m for m in ae.modules() if isinstance(m, torch.nn.Conv3d) and m.kernel_size == (3, 3, 3)]
    assert convs and all(m.padding_mode == "replicate" for m in convs)
    with pytest.raises(ValueError, match="powers of 2"):
        LVDMAutoencoderConfig(downsample=[3, 8, 8])


# ----------------------------------------------------------------------------- U-Net blocks
@pytest.mark.parametrize("attention", ["factorized", "joint"])
def test_unet_shapes_and_every_block(attention):
    net = LVDMUNet({**TINY_UNET, "attention": attention}, 4, (5, 8, 8), perturb_levels=10)
    x = rand(2, 4, 5, 8, 8)
    cond = {"latent": rand(2, 4, 5, 8, 8, seed=1), "known": torch.tensor([[1, 1, 0, 0, 0]] * 2).bool(),
            "level": torch.tensor([0, 7])}
    assert net(x, torch.tensor([3, 900]), cond).shape == x.shape
    assert net(x, 3).shape == x.shape  # no condition: unconditional
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv3d) and max(m.kernel_size) > 1]
    assert convs and all(m.kernel_size == (1, 3, 3) for m in convs)  # time is mixed only by attention
    axes = sorted({m.axis for m in net.modules() if isinstance(m, AxisAttention)})
    assert axes == (["space", "time"] if attention == "factorized" else ["joint"])
    with pytest.raises(ValueError, match="x_t must be"):
        net(rand(2, 4, 4, 8, 8), 3)
    with pytest.raises(ValueError, match="attention must be"):
        LVDMUNet({**TINY_UNET, "attention": "axial"}, 4, (5, 8, 8), 10)


def test_factorized_attention_mixes_only_along_its_axis():
    x = rand(1, 16, 4, 3, 3)
    changed = x.clone()
    changed[:, :, 0, 0, 0] = rand(16, seed=3)  # one token: frame 0, location (0, 0)
    space = randomize(AxisAttention("space", 16, 8))
    time = randomize(AxisAttention("time", 16, 8, max_relative=2), seed=1)
    joint = randomize(AxisAttention("joint", 16, 8), seed=2)
    with torch.no_grad():
        ds = (space(changed) - space(x)).abs().amax(dim=(0, 1))  # [T, H, W]
        dt = (time(changed) - time(x)).abs().amax(dim=(0, 1))
        dj = (joint(changed) - joint(x)).abs().amax(dim=(0, 1))
    other_frames, other_places = torch.ones(4, 3, 3, dtype=torch.bool), torch.ones(4, 3, 3, dtype=torch.bool)
    other_frames[0] = False  # spatial attention: only frame 0 may change, all of its locations
    other_places[:, 0, 0] = False  # temporal attention: only location (0, 0) may change, at every frame
    assert ds[other_frames].max() == 0 and (ds[0] > 0).all()
    assert dt[other_places].max() == 0 and (dt[:, 0, 0] > 0).all()
    assert (dj > 0).all()  # joint attention mixes everything


def test_temporal_attention_has_a_relative_position_bias():
    time = randomize(AxisAttention("time", 16, 8, max_relative=2))
    x = rand(1, 16, 4, 2, 2)
    with torch.no_grad():
        out = time(x)
        time.rel_bias.zero_()
        assert not torch.allclose(time(x), out)  # the bias reaches the attention weights
    assert time.rel_bias.shape == (2 * 2 + 1, 2)  # clipped distances -2..2, one bias per head


# ----------------------------------------------------------------------------- conditioning
def test_perturbation_level_is_honoured():
    diffusion = GaussianDiffusion(DiffusionConfig(beta_start=0.0015, beta_end=0.0155))
    latent, noise = rand(3, 4, 2, 4, 4), rand(3, 4, 2, 4, 4, seed=1)
    assert torch.equal(perturb(diffusion, latent, torch.zeros(3, dtype=torch.long), noise), latent)  # s = 0: none
    levels = torch.tensor([0, 1, 250])
    out = perturb(diffusion, latent, levels, noise)
    assert torch.equal(out[0], latent[0])
    for i, s in ((1, 1), (2, 250)):
        expected = diffusion.q_sample(latent[i:i + 1], s - 1, noise[i:i + 1])
        assert torch.allclose(out[i:i + 1], expected)
    assert (out[2] - latent[2]).abs().mean() > (out[1] - latent[1]).abs().mean() > 0


def test_known_frames_replace_the_input_and_cond_mask_removes_them():
    net = randomize(LVDMUNet(TINY_UNET, 4, (3, 8, 8), perturb_levels=10))
    x = rand(2, 4, 3, 8, 8)
    known = torch.tensor([[True, False, False]] * 2)
    cond = {"latent": rand(2, 4, 3, 8, 8, seed=1), "known": known, "level": torch.tensor([2, 2])}
    with torch.no_grad():
        base = net(x, 5, cond)
        x2 = x.clone()
        x2[:, :, 0] += 1.0  # x_t at a known frame is not read
        assert torch.equal(net(x2, 5, cond), base)
        other = dict(cond, latent=cond["latent"].clone())
        other["latent"][:, :, 1:] += 1.0  # the condition at unknown frames is not read
        assert torch.equal(net(x, 5, other), base)
        assert not torch.equal(net(x, 5, dict(cond, level=torch.tensor([3, 3]))), base)  # s reaches the net
        uncond = net(x, 5, cond, torch.tensor([False, False]))
        assert torch.equal(uncond, net(x, 5, None))  # cond_mask False: no condition, level 0
        assert not torch.equal(uncond, base)


def test_guidance_formula():
    """``guidance`` g: ``uncond + g (cond - uncond)`` of the LVDM net's outputs (g = 1: conditional)."""
    net = randomize(LVDMUNet(TINY_UNET, 4, (3, 8, 8), perturb_levels=10)).eval()
    x, t = rand(2, 4, 3, 8, 8), torch.tensor([10, 500])
    cond = {"latent": rand(2, 4, 3, 8, 8, seed=1), "known": torch.tensor([[True, False, False]] * 2),
            "level": torch.tensor([4, 4])}
    with torch.no_grad():
        c = net(x, t, cond, torch.ones(2, dtype=torch.bool))
        u = net(x, t, cond, torch.zeros(2, dtype=torch.bool))
        for g in (0.0, 1.0, 1.5, 3.0):
            guided = GuidedDenoiser(net, cond, g, 2, x.device)(x, t)
            assert torch.allclose(guided, u + g * (c - u), atol=1e-5)


def test_training_loss_scores_only_the_generated_frames():
    """A net exact on the generated frames and wrong on the known one has zero loss when conditional;
    unconditional samples are scored on every frame."""
    diffusion = GaussianDiffusion()
    window, known = rand(4, 4, 3, 8, 8), torch.tensor([True, False, False])

    def exact_but_the_first_frame(x_t, t, cond, keep):
        a, b = diffusion._ab(t, x_t)
        eps = (x_t - a * window) / b  # the true noise everywhere
        eps[:, :, 0] = 100.0
        return eps

    cond = lvdm_training_loss(exact_but_the_first_frame, diffusion, window, known, 1.0, 10,
                              generator=torch.Generator().manual_seed(0))
    assert cond["cond_mask"].all() and cond["loss"] < 1e-6
    uncond = lvdm_training_loss(exact_but_the_first_frame, diffusion, window, known, 0.0, 10,
                                generator=torch.Generator().manual_seed(0))
    assert not uncond["cond_mask"].any() and uncond["loss"] > 100.0
    net = randomize(LVDMUNet(TINY_UNET, 4, (3, 8, 8), perturb_levels=10))
    out = lvdm_training_loss(net, diffusion, window, known, 0.5, 10, generator=torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and all(p.grad is not None for p in net.parameters() if p.requires_grad)
    same = lvdm_training_loss(net, diffusion, window, known, 0.5, 10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(same["loss"], out["loss"])  # the generator fixes every draw


def test_objective_config_checks():
    with pytest.raises(ValueError, match="role"):
        LVDMObjectiveConfig(role="extrapolate")
    with pytest.raises(ValueError, match="sample_perturb"):
        LVDMObjectiveConfig(max_perturb=10, sample_perturb=20)
    with pytest.raises(ValueError, match="key_stride"):
        LVDMObjectiveConfig(role="interpolate", key_stride=1)


def test_predictor_window_and_interpolation_keep_the_given_latents_positions():
    ae = LVDMAutoencoder(LVDMAutoencoderConfig(frames=4, resolution=32, channels=8, max_mult=2, downsample=[2, 4, 4]))
    space = VideoLatentSpace(ae, scale=0.5)
    diffusion = GaussianDiffusion(DiffusionConfig(sample_steps=2))
    net = randomize(LVDMUNet(TINY_UNET, 4, (3, 8, 8), perturb_levels=10)).eval()
    interp = LVDMPredictor(space, diffusion, net, 2, LVDMObjectiveConfig(role="interpolate", key_stride=2,
                                                                       max_perturb=10, sample_perturb=0))
    left, right = rand(1, 4, 1, 8, 8), rand(1, 4, 1, 8, 8, seed=1)
    mid = interp.interpolate(left, right, torch.Generator().manual_seed(0))
    assert mid.shape == (1, 4, 1, 8, 8)
    assert not torch.equal(interp.interpolate(right, left, torch.Generator().manual_seed(0)), mid)
    with pytest.raises(ValueError, match="interpolation model"):
        interp.predict_latents(left, torch.Generator().manual_seed(0))


# ----------------------------------------------------------------------------- hierarchy
@pytest.mark.parametrize("context,total,stride,keys", [(2, 12, 3, 2), (1, 7, 2, 4), (2, 5, 1, 3), (3, 16, 4, 1)])
def test_hierarchy_bookkeeping(context, total, stride, keys):
    """Every future index produced exactly once, keys never overwritten, no call reads the future."""
    writes: dict[int, int] = {}
    key_ids: set[int] = set()
    # Latents carry their timeline index as their value, so a call shows which indices it read.
    observed = torch.arange(context, dtype=torch.float32).view(1, 1, context, 1, 1)

    def predict_keys(latest: torch.Tensor) -> torch.Tensor:
        read = [int(v) for v in latest.flatten().tolist()]
        start = read[-1] + 1
        assert read == list(range(start - context, start))  # the c latents right before the segment
        ids = [start + (j + 1) * stride - 1 for j in range(keys)]
        key_ids.update(ids)
        return torch.tensor(ids, dtype=torch.float32).view(1, 1, keys, 1, 1)

    def interpolate(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        l, r = int(left.item()), int(right.item())
        assert r - l == stride and r in key_ids  # between a written latent and a sampled key
        for i in range(l + 1, r):
            writes[i] = writes.get(i, 0) + 1
        return torch.arange(l + 1, r, dtype=torch.float32).view(1, 1, r - l - 1, 1, 1)

    out = hierarchical_fill(observed, total, stride, keys, predict_keys, interpolate)
    assert out.shape == (1, 1, total, 1, 1)
    assert [int(v) for v in out.flatten().tolist()] == list(range(context, context + total))  # each index its own
    assert all(n == 1 for n in writes.values()) and not set(writes) & key_ids  # once; keys never overwritten
    assert set(range(context, context + total)) <= set(writes) | key_ids


def test_hierarchy_refuses_double_writes_and_early_reads():
    observed = torch.zeros(1, 1, 2, 1, 1)
    with pytest.raises(ValueError, match="interpolate gave"):
        hierarchical_fill(observed, 6, 3, 2, lambda c: torch.zeros(1, 1, 2, 1, 1),
                          lambda l, r: torch.zeros(1, 1, 3, 1, 1))
    segments = plan_segments(2, 6, 3, 2)
    assert [s.keys for s in segments] == [(4, 7)] and segments[0].gaps == ((1, 4), (4, 7))
    assert [s.keys for s in plan_segments(2, 7, 3, 2)] == [(4, 7), (10,)]
