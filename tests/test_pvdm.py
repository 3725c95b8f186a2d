"""PVDM baseline model code: the projected latent autoencoder and the plane U-Net (tiny sizes)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from models.diffusion import GaussianDiffusion
from models.pvdm_autoencoder import PLANES, PlaneLayout, PVDMAutoencoder, PVDMAutoencoderConfig, split_latent
from models.unets.pvdm_unet import (PVDMObjectiveConfig, PVDMUNet, PVDMUNetConfig, pvdm_guided_eps,
                                    pvdm_training_loss)
from models.unets.trunk import check_spatial_ladder, level_widths
from tools.registry import experiment_config
# one_thread: tiny nets run faster on one thread; randomized: zero-initialised layers get random values
from tests.test_unets import one_thread, randomized  # noqa: F401  (one_thread: an autouse fixture)

ROOT = Path(__file__).resolve().parent.parent
TINY_AE = dict(dim=16, heads=2, depth=1, decoder_depth=1, proj_depth=1, proj_heads=2, proj_mlp_dim=32, embed_dim=4)
TINY_UNET = dict(channels=16, channel_mults=[1, 2], num_res_blocks=1, attn_levels=[1], cross_levels=[0, 1],
                 attn_head_dim=8, norm_groups=4, pos_freqs=2)
# 8 frames of 32x48 (not square) in 8x8 patches: planes hw 4x6, tw 8x6, th 8x4.
ODD = dict(frames=8, resolution=32, width=48, patch_size=8)


def autoencoder(seed: int = 0, **overrides) -> PVDMAutoencoder:
    torch.manual_seed(seed)
    return PVDMAutoencoder(PVDMAutoencoderConfig(**{**dict(frames=8, resolution=32, patch_size=4), **TINY_AE,
                                                    **overrides})).eval()


def unet(layout: PlaneLayout = PlaneLayout(8, 4, 6), seed: int = 0, **overrides) -> PVDMUNet:
    torch.manual_seed(seed)
    return randomized(PVDMUNet(PVDMUNetConfig(**{**TINY_UNET, **overrides}), 4, layout), seed).eval()


def video(batch: int, frames: int, height: int, width: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, frames, height, width, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def latents(layout: PlaneLayout, batch: int = 2, seed: int = 2) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, 4, layout.numel, generator=gen) for _ in range(2))


# ----------------------------------------------------------------------------- autoencoder
@pytest.mark.parametrize("stem", ["patch", "conv"])
def test_encode_decode_shapes_and_range(stem):
    ae = autoencoder(stem=stem, **ODD)
    assert ae.layout == PlaneLayout(8, 4, 6)
    x = video(2, 8, 32, 48)
    with torch.no_grad():
        z = ae.encode_latent(x)
        out = ae.decode(z)
    assert z.shape == (2, 4, 4 * 6 + 8 * 6 + 8 * 4) and ae.latent_shape == tuple(z.shape[1:])
    assert {k: tuple(v.shape) for k, v in split_latent(z, ae.layout).items()} == {
        "hw": (2, 4, 4, 6), "tw": (2, 4, 8, 6), "th": (2, 4, 8, 4)}
    assert z.abs().max() <= 1  # tanh
    assert out.shape == x.shape and out.abs().max() <= 1


def test_16_frames_at_64_shapes():
    ae = autoencoder(frames=16, resolution=64, patch_size=8, stem="conv")
    with torch.no_grad():
        z = ae.encode_latent(video(1, 16, 64, 64))
        assert z.shape == (1, 4, 8 * 8 + 16 * 8 + 16 * 8)
        assert ae.decode(z).shape == (1, 3, 16, 64, 64)


def test_latent_size_is_the_sum_of_the_planes():
    layout = PVDMAutoencoderConfig(frames=16, resolution=256, patch_size=8).layout  # PVDM's sizes
    assert layout.shapes == {"hw": (32, 32), "tw": (16, 32), "th": (16, 32)}
    assert layout.numel == 32 * 32 + 16 * 32 + 16 * 32 == sum(a * b for a, b in layout.shapes.values()) == 2048


def test_split_merge_round_trip_is_exact():
    layout = PlaneLayout(8, 4, 6)
    z = torch.randn(3, 5, layout.numel)
    planes = layout.split(z)
    assert torch.equal(layout.merge(planes), z)
    assert all(torch.equal(a, b) for a, b in zip(layout.split(layout.merge(planes)).values(), planes.values()))
    # The layout: hw rows first, then tw, then th, each flattened row-major.
    assert torch.equal(planes["hw"][:, :, 1, 2], z[:, :, 1 * 6 + 2])
    assert torch.equal(planes["tw"][:, :, 3, 5], z[:, :, 24 + 3 * 6 + 5])
    assert torch.equal(planes["th"][:, :, 7, 0], z[:, :, 24 + 48 + 7 * 4])
    with pytest.raises(ValueError, match="latent of this layout"):
        layout.split(z[..., :-1])


def test_each_projection_reduces_only_its_own_axis():
    """A change of u at one (s, h, w) reaches the hw plane only at (h, w), tw only at (s, w), th only at (s, h)."""
    ae = autoencoder(**ODD)
    s0, h0, w0 = 5, 2, 3
    u = torch.randn(1, 16, 8, 4, 6, generator=torch.Generator().manual_seed(3))
    u2 = u.clone()
    u2[:, :, s0, h0, w0] += 1.0
    with torch.no_grad():
        a, b = ae.project(u), ae.project(u2)
    where = {"hw": (h0, w0), "tw": (s0, w0), "th": (s0, h0)}
    for name in PLANES:
        moved = (a[name] - b[name]).abs().amax(dim=(0, 1)) > 0
        expected = torch.zeros_like(moved)
        expected[where[name]] = True
        assert torch.equal(moved, expected), name


def test_decoding_broadcasts_each_plane_along_its_missing_axis():
    ae = autoencoder(**ODD)
    planes = {k: torch.randn(1, 4, *shape) for k, shape in ae.layout.shapes.items()}
    changed = dict(planes, hw=planes["hw"].clone())
    changed["hw"][:, :, 1, 4] += 1.0
    with torch.no_grad():
        moved = (ae.unproject(planes) - ae.unproject(changed)).abs().amax(dim=(0, 1)) > 0  # [S, H', W']
    assert moved[:, 1, 4].all() and moved.sum() == ae.layout.frames  # every frame at (1, 4), nothing else


def test_gradients_reach_every_autoencoder_parameter():
    ae = autoencoder(**ODD).train()
    x = video(1, 8, 32, 48)
    ((ae(x) - x).abs().mean()).backward()
    missing = [n for n, p in ae.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_autoencoder_config_errors():
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        PVDMAutoencoderConfig(resolution=36, patch_size=8)
    with pytest.raises(ValueError, match="power of 2"):
        PVDMAutoencoderConfig(resolution=48, patch_size=6, stem="conv")
    with pytest.raises(ValueError, match="unknown PVDMAutoencoderConfig field"):
        PVDMAutoencoder({"frames": 8, "patchsize": 4})
    with pytest.raises(ValueError, match=r"video must be \[B, 3, 8, 32, 48\]"):
        autoencoder(**ODD).encode_latent(video(1, 8, 32, 32))


# ----------------------------------------------------------------------------- denoiser
def test_unet_output_is_shaped_like_its_input():
    for layout in (PlaneLayout(8, 4, 6), PlaneLayout(16, 8, 8)):
        net = unet(layout)
        z_t, cond = latents(layout)
        with torch.no_grad():
            assert net(z_t, torch.tensor([3, 900]), cond).shape == z_t.shape


def test_unconditional_is_a_zero_condition():
    net = unet()
    z_t, cond = latents(net.layout)
    t = torch.tensor([10, 500])
    off = torch.zeros(2, dtype=torch.bool)
    with torch.no_grad():
        none = net(z_t, t)
        assert torch.equal(none, net(z_t, t, torch.zeros_like(cond)))
        assert torch.equal(none, net(z_t, t, cond, off))
        assert torch.equal(none, net(z_t, t, torch.full_like(cond, float("nan")), off))
        assert not torch.allclose(none, net(z_t, t, cond))  # the condition matters when kept


def test_planes_exchange_information():
    """A change in the hw plane of x_t alone reaches the tw and th planes of the output."""
    net = unet()
    z_t, _ = latents(net.layout)
    planes = net.layout.split(z_t)
    changed = net.layout.merge(dict(planes, hw=planes["hw"] + 1.0))
    with torch.no_grad():
        a, b = (net.layout.split(net(x, torch.tensor([100, 100]))) for x in (z_t, changed))
    assert all((a[k] - b[k]).abs().max() > 1e-4 for k in ("tw", "th"))


def test_gradients_reach_every_unet_parameter():
    net = unet().train()
    z0, z_prev = latents(net.layout)
    pvdm_training_loss(net, GaussianDiffusion(), z0, z_prev, 0.3, generator=torch.Generator().manual_seed(0))[
        "loss"].backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_guidance_is_pvdm_formula():
    """eps = (1 + w) eps(z_t, cond) - w eps(z_t, 0): w = 0 conditional, w = -1 unconditional."""
    net = unet()
    z_t, cond = latents(net.layout)
    t = torch.tensor([7, 700])
    with torch.no_grad():
        eps_c, eps_u = net(z_t, t, cond), net(z_t, t)
        assert torch.equal(pvdm_guided_eps(net, z_t, t, cond, 0.0), eps_c)
        assert torch.equal(pvdm_guided_eps(net, z_t, t, cond, -1.0), eps_u)
        for w in (0.5, 2.0):  # one batched pass against two: float rounding differs by ~1e-5 on some CPUs
            torch.testing.assert_close(pvdm_guided_eps(net, z_t, t, cond, w), (1 + w) * eps_c - w * eps_u,
                                       rtol=1e-4, atol=1e-4)


def test_loss_mixes_conditional_and_unconditional_terms():
    net = unet()
    diffusion = GaussianDiffusion()  # eps prediction
    z0, z_prev = latents(net.layout)
    t = torch.tensor([50, 800])
    noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(4))
    z_t = diffusion.q_sample(z0, t, noise)
    with torch.no_grad():
        cond_loss = ((noise - net(z_t, t, z_prev)) ** 2).mean()
        uncond_loss = ((noise - net(z_t, t, torch.zeros_like(z_prev))) ** 2).mean()
        out = {lam: pvdm_training_loss(net, diffusion, z0, z_prev, lam, t=t, noise=noise) for lam in (1.0, 0.0, 0.3)}
    torch.testing.assert_close(out[1.0]["loss"], cond_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[0.0]["loss"], uncond_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[0.3]["loss"], 0.3 * cond_loss + 0.7 * uncond_loss, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"lam must be in \[0, 1\]"):
        pvdm_training_loss(net, diffusion, z0, z_prev, 1.5)


def test_unet_rejects_planes_it_cannot_halve():
    with pytest.raises(ValueError, match="tw plane"):
        PVDMUNet(PVDMUNetConfig(**{**TINY_UNET, "channel_mults": [1, 2, 2]}), 4, PlaneLayout(6, 8, 8))


# ----------------------------------------------------------------------------- configs
@pytest.mark.parametrize("name", ["pvdm_shapes32", "pvdm_shapes64", "pvdm_ucf101_256", "pvdm_sky256"])
def test_configs_build_the_dataclasses(name):
    """Each first-stage config's `model.pvdm` is a valid PVDMAutoencoderConfig for its data; a
    second-stage config of the same name fits a U-Net ladder onto those planes."""
    first = OmegaConf.to_container(experiment_config("first_stage", ROOT / "configs/first_stage" / f"{name}.yaml"),
                                   resolve=True)
    ae_cfg = PVDMAutoencoderConfig(**first["model"]["pvdm"])
    assert (ae_cfg.frames, ae_cfg.resolution) == (first["data"]["frames"], first["data"]["resolution"])
    second = OmegaConf.to_container(experiment_config("ddpm", ROOT / "configs/ddpm" / f"{name}.yaml"), resolve=True)
    unet_cfg, objective = PVDMUNetConfig(**second["model"]["unet"]), PVDMObjectiveConfig(**second["model"]["pvdm"])
    assert second["data"]["frames"] == second["model"]["cond_frames"] + ae_cfg.frames
    assert second["model"]["diffusion"]["guidance"] == 1 + objective.w
    for plane, (a, b) in ae_cfg.layout.shapes.items():
        check_spatial_ladder(plane, a, b, len(level_widths(unet_cfg)))
    if name == "pvdm_shapes32":  # small enough to build and run here
        ae = PVDMAutoencoder(ae_cfg).eval()
        net = PVDMUNet(unet_cfg, ae_cfg.embed_dim, ae.layout).eval()
        with torch.no_grad():
            z = ae.encode_latent(video(1, ae_cfg.frames, ae_cfg.resolution, ae_cfg.resolution))
            assert net(z, 10, z).shape == z.shape and ae.decode(z).shape == (1, 3, 8, 32, 32)


def test_checkpointing_changes_nothing_but_memory():
    x = video(1, 8, 32, 48)
    ae_plain, ae_ckpt = autoencoder(**ODD).train(), autoencoder(checkpointing=True, **ODD).train()
    net_plain, net_ckpt = unet().train(), unet(checkpointing=True).train()
    z0, z_prev = latents(net_plain.layout)
    t, noise, diffusion = torch.tensor([5, 600]), torch.randn(z0.shape), GaussianDiffusion()
    for (a, b), loss in (((ae_plain, ae_ckpt), lambda m: (m(x) - x).abs().mean()),
                         ((net_plain, net_ckpt),
                          lambda m: pvdm_training_loss(m, diffusion, z0, z_prev, 0.3, t=t, noise=noise)["loss"])):
        la, lb = loss(a), loss(b)
        la.backward()
        lb.backward()
        torch.testing.assert_close(la, lb)
        for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
            torch.testing.assert_close(pa.grad, pb.grad, msg=name)
