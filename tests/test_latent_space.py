"""The second stage's latent space: pseudo-clips, scaling, targets, decoding, snapping."""
import torch

from models.latent_space import SemanticLatentSpace, pseudo_clip
from models.moso import MosoConfig, MosoVQVAE


def first_stage():
    torch.manual_seed(0)
    model = MosoVQVAE(MosoConfig(hidden=16, res_depth=1, attn_heads=2, codebook_size=32, code_dim=4), frames=4,
                      resolution=32)
    model(torch.rand(2, 3, 4, 32, 32) * 2 - 1, step=0)  # one training pass initialises the codebook
    return model.eval()


def clip(b=2, t=4, seed=1):
    return torch.rand(b, 3, t, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_pseudo_clip_repeats_the_last_observed_frame():
    observed = clip(t=3)
    out = pseudo_clip(observed, 6)
    assert out.shape[2] == 6
    assert torch.equal(out[:, :, :3], observed)
    assert all(torch.equal(out[:, :, i], observed[:, :, -1]) for i in range(3, 6))
    assert torch.equal(pseudo_clip(clip(t=8), 4), clip(t=8)[:, :, 4:])  # more observed than a clip: the last T


def test_scale_gives_unit_std_and_round_trips():
    space = SemanticLatentSpace(first_stage())
    video = clip()
    scale = space.fit_scale([video])
    cond = space.condition(video)
    values = torch.cat([v.flatten() for v in cond.values()])
    assert abs(float(values.std()) - 1.0) < 1e-4 and scale > 0
    # With K = T observed frames, condition + target decode to the first stage's own reconstruction.
    recon = space.first_stage(video)["recon"].clamp(-1, 1)
    assert torch.allclose(space.decode(cond, space.target(video, video)), recon, atol=1e-5)


def test_snap_returns_codebook_rows_and_keeps_exact_codes():
    space = SemanticLatentSpace(first_stage())
    space.fit_scale([clip()])
    motion = space.codes(clip())["motion"]
    assert torch.equal(space.snap(motion), motion)
    noisy = space.snap(motion + 0.01 * torch.randn_like(motion))
    book = space.first_stage.quantizer.codebook
    rows = noisy.permute(0, 2, 3, 4, 1).reshape(-1, book.shape[1])
    assert (rows[:, None, :] == book[None]).all(dim=-1).any(dim=-1).all()  # every row is a codebook row


def test_first_stage_stays_frozen_and_in_eval_mode():
    space = SemanticLatentSpace(first_stage())
    space.train()
    assert not space.first_stage.training
    assert not any(p.requires_grad for p in space.first_stage.parameters())


def test_scale_can_be_measured_on_the_motion_codes_only():
    space = SemanticLatentSpace(first_stage())
    video = clip()
    codes = space.codes(video)
    motion_only = space.fit_scale([video], components=("motion",))
    assert abs(motion_only - float(codes["motion"].double().std())) < 1e-6
    everything = space.fit_scale([video])
    assert abs(everything - float(torch.cat([v.flatten() for v in codes.values()]).double().std())) < 1e-6
    assert motion_only != everything
