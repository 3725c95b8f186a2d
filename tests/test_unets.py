"""Second-stage denoisers (models/unets): interface, conditioning, what mixes with what."""
from __future__ import annotations

from dataclasses import fields

import pytest
import torch
from omegaconf import OmegaConf

import models
from models.unets import RSVPMUNet, RSVPS1UNet, RSVPS2UNet, RSVPS2Config

D = 4
# Three different spatial sizes, as the first stage produces (scene 8x8, object 4x4, motion 4 frames 4x4).
SHAPES = {"scene": (1, 8, 8), "object": (1, 4, 4), "motion": (4, 4, 4)}
VARIANTS = {"rsvp_s2": RSVPS2UNet, "rsvp_s1": RSVPS1UNet, "rsvp_m": RSVPMUNet}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # These nets are tiny: with 2 intra-op threads on busy shared cores, thread hand-offs cost
    # 10-20x the work (measured: 120 s vs 5 s for this file).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(name: str, **overrides):
    """A tiny config of variant ``name`` (its own schema; fields of other variants are left out)."""
    base = dict(channels=16, channel_mults=[1, 2], num_res_blocks=1, attn_levels=[1], attn_head_dim=8,
                norm_groups=4, pos_freqs=2, context_channels=16, context_blocks=1, context_max_size=4)
    cls = VARIANTS[name].config_class
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in {**base, **overrides}.items() if k in known})


def randomized(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give zero-initialised layers (residual outputs, flag embeddings) random values: at init
    they hide every dependence this file checks."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return net


def build(name: str, seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    return randomized(VARIANTS[name](tiny_config(name, **overrides), D, SHAPES), seed).eval()


def inputs(batch: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    x_t = torch.randn(batch, D, *SHAPES["motion"], generator=gen)
    cond = {k: torch.randn(batch, D, *v, generator=gen) for k, v in SHAPES.items()}
    return x_t, torch.arange(batch) * 37 + 5, cond


def changed(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_output_has_the_shape_of_x_t(name):
    net = build(name)
    x_t, t, cond = inputs(batch=3)
    for mask in (None, torch.tensor([True, False, True])):
        out = net(x_t, t, cond, mask)
        assert out.shape == x_t.shape and torch.isfinite(out).all()
    assert net(x_t, 7, cond).shape == x_t.shape  # a scalar t is broadcast


@pytest.mark.parametrize("name", list(VARIANTS))
def test_gradients_reach_every_parameter(name):
    net = build(name).train()
    x_t, t, cond = inputs()
    out = net(x_t, t, cond, torch.tensor([True, False]))  # both flag rows and the null context are used
    (out * torch.randn_like(out)).sum().backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"parameters without gradient: {dead}"
    # A batch without dropped conditions still gives every parameter a gradient tensor (zeros for
    # the null entries), so DDP needs no find_unused_parameters.
    net.zero_grad(set_to_none=True)
    net(x_t, t, cond).sum().backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("name", list(VARIANTS))
def test_unconditional_samples_ignore_the_condition(name):
    net = build(name)
    x_t, t, cond = inputs()
    other = {k: v + torch.randn_like(v) for k, v in cond.items()}
    for v in other.values():
        v[0, 0].fill_(float("nan"))  # not even a NaN in a dropped condition may reach the output
    mask = torch.tensor([False, True])
    a, b = net(x_t, t, cond, mask), net(x_t, t, other, mask)
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=1e-6)
    assert torch.isfinite(b[0]).all()
    assert changed(net(x_t, t, cond)[1], net(x_t, t, {k: v.nan_to_num() for k, v in other.items()})[1]) > 1e-3
    # The flag alone changes the prediction (the net knows the condition was dropped).
    zeros = {k: torch.zeros_like(v) for k, v in cond.items()}
    kept, dropped = torch.tensor([True, True]), torch.tensor([False, False])
    assert changed(net(x_t, t, zeros, kept), net(x_t, t, zeros, dropped)) > 1e-4


@pytest.mark.parametrize("name", list(VARIANTS))
def test_each_condition_matters_when_kept(name):
    net = build(name)
    x_t, t, cond = inputs()
    base = net(x_t, t, cond)
    for key in ("scene", "object", "motion"):
        bumped = dict(cond, **{key: cond[key] + 1.0})
        assert changed(net(x_t, t, bumped), base) > 1e-4, key


def perturb_frame(x: torch.Tensor, frame: int) -> torch.Tensor:
    y = x.clone()
    y[:, :, frame] += 1.0
    return y


def frame_changes(net, x_t, t, cond, new_x_t=None, new_cond=None) -> list[float]:
    a = net(x_t, t, cond)
    b = net(x_t if new_x_t is None else new_x_t, t, cond if new_cond is None else new_cond)
    return [changed(a[:, :, k], b[:, :, k]) for k in range(a.shape[2])]


@pytest.mark.parametrize("name", ["rsvp_s2", "rsvp_m"])
def test_3d_variants_mix_frames(name):
    net = build(name)
    x_t, t, cond = inputs()
    last = SHAPES["motion"][0] - 1
    # A change of the first noisy frame reaches the last predicted frame ...
    assert frame_changes(net, x_t, t, cond, new_x_t=perturb_frame(x_t, 0))[last] > 1e-4
    # ... and so does a change of the first observed frame.
    new_cond = dict(cond, motion=perturb_frame(cond["motion"], 0))
    assert frame_changes(net, x_t, t, cond, new_cond=new_cond)[last] > 1e-4


def test_rsvp_s2_streams_talk_only_through_attention():
    # Scene/object reach the motion output only through the joint attention: with attention at the
    # middle block alone they still matter (the streams are joined there) ...
    net = build("rsvp_s2", attn_levels=[])
    x_t, t, cond = inputs()
    for key in ("scene", "object"):
        assert changed(net(x_t, t, dict(cond, **{key: -cond[key]})), net(x_t, t, cond)) > 1e-4, key
    # ... and with every attention output projection zeroed they do not matter at all.
    with torch.no_grad():
        for name, p in net.named_parameters():
            if ".out." in name and "trunk" in name:
                p.zero_()
    for key in ("scene", "object"):
        torch.testing.assert_close(net(x_t, t, dict(cond, **{key: -cond[key]})), net(x_t, t, cond), rtol=0, atol=0)


def test_rsvp_s2_output_frame_depends_on_its_scene_region():
    # Position features let attention line scene tokens up with motion tokens: a change of one
    # scene corner moves the prediction (a weak check: the location is not asserted).
    net = build("rsvp_s2")
    x_t, t, cond = inputs()
    scene = cond["scene"].clone()
    scene[..., :2, :2] += 1.0
    assert changed(net(x_t, t, dict(cond, scene=scene)), net(x_t, t, cond)) > 1e-4


def test_rsvp_s1_frames_are_independent():
    """RSVP-S1 mixes nothing across time: output frame k reads x_t[k], observed motion[k], scene,
    object (and its frame index) only."""
    net = build("rsvp_s1")
    x_t, t, cond = inputs()
    frames = SHAPES["motion"][0]
    for k in (0, 2):
        deltas = frame_changes(net, x_t, t, cond, new_x_t=perturb_frame(x_t, k))
        assert deltas[k] > 1e-4 and all(d <= 1e-6 for j, d in enumerate(deltas) if j != k), deltas
        deltas = frame_changes(net, x_t, t, cond, new_cond=dict(cond, motion=perturb_frame(cond["motion"], k)))
        assert deltas[k] > 1e-4 and all(d <= 1e-6 for j, d in enumerate(deltas) if j != k), deltas
    deltas = frame_changes(net, x_t, t, cond, new_cond=dict(cond, scene=cond["scene"] + 1.0))
    assert all(d > 1e-4 for d in deltas) and len(deltas) == frames
    # With the same input in every frame, frames differ only through the frame-index embedding.
    same = x_t[:, :, :1].expand_as(x_t).contiguous()
    cond_same = dict(cond, motion=cond["motion"][:, :, :1].expand_as(x_t).contiguous())
    out = net(same, t, cond_same)
    assert changed(out[:, :, 0], out[:, :, 1]) > 1e-4
    out = build("rsvp_s1", frame_embed=False)(same, t, cond_same)
    torch.testing.assert_close(out[:, :, 0], out[:, :, 1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_eval_is_deterministic_and_train_uses_dropout(name):
    net = build(name, dropout=0.5)
    x_t, t, cond = inputs()
    assert torch.equal(net(x_t, t, cond), net(x_t, t, cond))
    net.train()
    assert changed(net(x_t, t, cond), net(x_t, t, cond)) > 1e-5


def test_samples_do_not_interact_within_a_batch():
    net = build("rsvp_s2")
    x_t, t, cond = inputs(batch=2)
    both = net(x_t, t, cond)
    alone = net(x_t[:1], t[:1], {k: v[:1] for k, v in cond.items()})
    torch.testing.assert_close(both[:1], alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_checkpointing_matches_plain_backward(name):
    x_t, t, cond = inputs()
    grads = []
    for flag in (False, True):
        net = build(name, checkpointing=flag).train()
        out = net(x_t, t, cond, torch.tensor([True, False]))
        out.square().mean().backward()
        grads.append({n: p.grad for n, p in net.named_parameters()})
    for n, g in grads[0].items():
        torch.testing.assert_close(grads[1][n], g, rtol=1e-4, atol=1e-6, msg=n)


def test_channels_last_input_gives_the_same_output():
    net = build("rsvp_s2").to(memory_format=torch.channels_last_3d)
    x_t, t, cond = inputs()
    cl = {k: v.contiguous(memory_format=torch.channels_last_3d) for k, v in cond.items()}
    out = net(x_t.contiguous(memory_format=torch.channels_last_3d), t, cl)
    torch.testing.assert_close(out, net(x_t, t, cond), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_bf16_autocast_forward_runs(name):
    net = build(name)
    x_t, t, cond = inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x_t, t, cond, torch.tensor([True, False]))
    assert out.shape == x_t.shape and torch.isfinite(out).all()


def test_registry_and_config_forms():
    for name, cls in VARIANTS.items():
        schema = OmegaConf.structured(tiny_config(name))
        net = models.build_model(name, cfg=schema, code_dim=D, latent_shapes=SHAPES)  # DictConfig accepted
        assert isinstance(net, cls) and models.get_model_class(name) is cls
    with pytest.raises(ValueError, match="context_channels"):  # each variant has its own schema
        RSVPS2UNet(dict(context_channels=16), D, SHAPES)
    plain = dict(channels=16, channel_mults=[1, 2], attn_levels=[1], attn_head_dim=8)
    assert isinstance(RSVPS2UNet(plain, D, SHAPES), RSVPS2UNet)  # a plain dict
    with pytest.raises(ValueError, match="rsvp_typo"):
        RSVPS2UNet(dict(rsvp_typo=1), D, SHAPES)


def test_clear_errors_for_bad_shapes():
    net = build("rsvp_s2")
    x_t, t, cond = inputs()
    with pytest.raises(ValueError, match=r"cond\['object'\]"):
        net(x_t, t, dict(cond, object=cond["object"][..., :2, :2]))
    with pytest.raises(ValueError, match="lacks 'scene'"):
        net(x_t, t, {k: v for k, v in cond.items() if k != "scene"})
    with pytest.raises(ValueError, match="t must be"):
        net(x_t, t[:1], cond)
    with pytest.raises(ValueError, match="cannot be halved"):
        RSVPS2UNet(RSVPS2Config(channels=16, channel_mults=[1, 2, 2, 2], attn_head_dim=8), D, SHAPES)
    with pytest.raises(ValueError, match="attn_levels"):
        RSVPS2UNet(RSVPS2Config(channels=16, channel_mults=[1, 2], attn_levels=[2], attn_head_dim=8), D, SHAPES)
    with pytest.raises(ValueError, match="attn_head_dim"):
        RSVPS2UNet(RSVPS2Config(channels=16, channel_mults=[1, 2], attn_levels=[1], attn_head_dim=12), D, SHAPES)
