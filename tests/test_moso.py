"""First-stage model: shapes, quantizer round trips, dead-code restarts, gradients, decomposition."""
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from models.moso import (MosoConfig, MosoVQVAE, OffsetWarp, anchor_difference, decompose_inputs, fine_matching,
                         local_matching, motion_mask, move_by, one_hot_largest)
from evaluation.frame_metrics import psnr_per_frame
from models.quantizers import EMAVectorQuantizer, FSQuantizer

SMALL = dict(hidden=16, res_depth=1, attn_heads=2, codebook_size=64, code_dim=4)


def small_model(**overrides) -> MosoVQVAE:
    torch.manual_seed(0)
    return MosoVQVAE(MosoConfig(**{**SMALL, **overrides}), frames=8, resolution=32)


def clip(batch=2, frames=8, size=32):
    return torch.rand(batch, 3, frames, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.mark.parametrize("quantizer", ["vq", "fsq"])
def test_latent_and_output_shapes(quantizer):
    model = small_model(quantizer=quantizer, down_scene=2, down_object=3, down_motion=3, down_content=2)
    out = model(clip(), step=0)
    assert out["recon"].shape == (2, 3, 8, 32, 32)
    assert out["codes"]["scene"].shape == (2, 4, 1, 8, 8)
    assert out["codes"]["object"].shape == (2, 4, 1, 4, 4)
    assert out["codes"]["motion"].shape == (2, 4, 8, 4, 4)
    assert out["indices"]["motion"].shape == (2, 8, 4, 4)
    assert model.latent_shapes() == {"scene": (1, 8, 8), "object": (1, 4, 4), "motion": (8, 4, 4)}
    assert int(out["indices"]["scene"].max()) < model.codebook_size


@pytest.mark.parametrize("quantizer", ["vq", "fsq"])
def test_indices_to_codes_equals_quantized_output_in_eval(quantizer):
    model = small_model(quantizer=quantizer)
    model(clip(), step=0)  # one training pass so the VQ codebook is initialised from data
    model.eval()
    with torch.no_grad():
        out = model(clip())
        codes = model.codes_from_indices(out["indices"])
        for k in ("scene", "object", "motion"):
            assert torch.equal(codes[k], out["codes"][k])
        assert torch.equal(model.decode_indices(out["indices"]), out["recon"])


def test_quantized_codes_are_codebook_rows():
    vq = EMAVectorQuantizer(dim=4, codebook_size=16)
    vq(torch.randn(2, 50, 4))
    vq.eval()
    quantized, indices, loss = vq(torch.randn(2, 50, 4))
    assert torch.allclose(quantized, vq.codebook[indices], atol=1e-6)
    assert float(loss.detach()) == 0.0  # no commitment term outside training


def test_dead_codes_are_restarted_from_the_batch():
    torch.manual_seed(0)
    # decay 0.9 so that unused codes' EMA cluster sizes fall below the threshold within the test
    vq = EMAVectorQuantizer(dim=4, codebook_size=32, decay=0.9, dead_code_threshold=1.0)
    vq(torch.randn(4, 64, 4))  # initialise
    with torch.no_grad():  # push every code far from the data: none will be chosen
        vq.vq._codebook.embed.add_(100.0)
        vq.vq._codebook.embed_avg.copy_(vq.vq._codebook.embed * vq.vq._codebook.cluster_size[..., None])
    for _ in range(30):  # unused codes' EMA cluster sizes decay below the threshold
        vq(torch.randn(4, 64, 4))
    assert float(vq.codebook.abs().max()) < 20.0, "dead codes were not moved back to the data"
    stats = vq.usage.stats(vq(torch.randn(4, 64, 4))[1])
    assert stats["used_codes"] > 8


def test_fsq_codebook_size_and_zero_loss():
    fsq = FSQuantizer(dim=6, levels=[8, 5, 5, 5])
    quantized, indices, loss = fsq(torch.randn(2, 10, 6))
    assert fsq.codebook_size == 1000 and quantized.shape == (2, 10, 6)
    assert int(indices.max()) < 1000 and float(loss) == 0.0


@pytest.mark.parametrize("step", [0, 10**6])
def test_gradients_reach_every_encoder_and_decoder(step):
    model = small_model()
    out = model(clip(), step=step)
    ((out["recon"] - clip()).abs().mean() + out["quant_loss"]).backward()
    for name in ("scene", "object", "motion"):
        grads = [p.grad for p in model.encoders[name].parameters()]
        assert all(g is not None for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name
    assert all(p.grad is not None for p in model.decoder.parameters())


def test_decomposition_splits_moving_pixels_from_background():
    video = torch.full((1, 3, 6, 16, 16), -1.0)
    for t in range(6):  # a dark-grey 3x3 square moving right by 2 px per frame on black
        video[:, :, t, 6:9, 2 * t:2 * t + 3] = -0.5  # 0.25 in [0, 1]: its differences fall in [0.1, 0.9]
    anchor = video[:, :, 0]
    diff = anchor_difference((video + 1) / 2, (anchor + 1) / 2)
    mask = motion_mask(diff, 0.1, 0.9)
    assert mask[0, 0, 2, 7, 5] == 1  # where the square is at t=2
    assert mask[0, 0, 2, 7, 0] == 1  # where it was in the anchor frame: marked in every frame
    assert mask[0, 0, 2, 0, 0] == 0  # static background
    inputs = decompose_inputs(video, anchor, 0.1, 0.9, full_input=False)
    assert torch.equal(inputs["object"] + inputs["scene"], video)
    raw = decompose_inputs(video, anchor, 0.1, 0.9, full_input=True)
    assert torch.equal(raw["scene"], video) and torch.equal(raw["object"], video)


def test_motion_input_is_moso_anchor_difference():
    x = torch.rand(1, 3, 5, 4, 4)
    anchor = torch.rand(1, 3, 4, 4)
    d = anchor_difference(x, anchor)
    for t in range(4):  # 2 x_t - x_anchor - x_{t+1}, the anchor fixed for the whole clip
        assert torch.allclose(d[:, :, t], 2 * x[:, :, t] - anchor - x[:, :, t + 1])
    assert torch.allclose(d[:, :, -1], x[:, :, -1] - anchor)  # no frame after the clip: x_T := x_{T-1}


def test_anchor_before_changes_the_motion_codes_and_defaults_to_the_first_frame():
    model = small_model().eval()
    video = clip()
    with torch.no_grad():
        default = model.encode(video)["codes"]["motion"]
        first = model.encode(video, anchor=video[:, :, 0])["codes"]["motion"]
        other = model.encode(video, anchor=-video[:, :, 0])["codes"]["motion"]
    assert torch.equal(default, first)
    assert not torch.equal(default, other)


def test_offset_warp_moves_features_by_the_chosen_offset():
    warp = OffsetWarp(channels=2, window=3)
    obj = torch.zeros(1, 2, 5, 5)
    obj[:, :, 2, 2] = 1.0
    with torch.no_grad():  # choose "take the cell one to the left" (offset index (1, 0) in the 3x3 window)
        warp.to_logits.bias.fill_(-1e4)
        warp.to_logits.bias[3] = 1e4
    moved = warp(obj, torch.zeros(2, 2, 5, 5))  # two frames of one clip
    assert moved.shape == (2, 2, 5, 5)
    assert torch.allclose(moved[:, :, 2, 3], torch.ones(2, 2)) and float(moved.sum()) == 4.0


def test_warp_model_decodes_with_motion_from_the_anchor():
    model = small_model(merge="warp", object_input="anchor", anchor="before", temporal_fusion="mean",
                        temporal_position=False, warp_window=5)
    video = clip()
    out = model(video, step=0, anchor=video[:, :, 0])
    assert out["recon"].shape == video.shape and out["codes"]["object"].shape[2] == 1
    out["recon"].mean().backward()
    assert model.decoder.warp.to_logits.weight.grad is not None


def test_warp_keys_let_content_choose_the_offset():
    """With content keys, a query that matches one source cell's content makes the warp take it."""
    warp = OffsetWarp(channels=2, window=3, key_dim=2)
    obj = torch.zeros(1, 2, 5, 5)
    obj[:, 0, 2, 2] = 1.0  # one marked cell
    with torch.no_grad():
        warp.to_logits.weight.zero_()
        warp.to_logits.bias.zero_()  # the motion-only term prefers no offset
        warp.to_key.weight.copy_(torch.eye(2)[:, :, None, None])
        warp.to_key.bias.zero_()
        warp.to_query.bias.copy_(torch.tensor([1e4, 0.0]))  # look for the marked content
    start = OffsetWarp(channels=2, window=3, key_dim=2)
    motion = torch.zeros(1, 2, 5, 5)
    assert torch.allclose(start.weights(motion, 1, obj), OffsetWarp(2, 3).weights(motion, 1)), "starts motion-only"
    moved = warp(obj, motion)
    assert torch.allclose(moved[0, 0, 1:4, 1:4], torch.ones(3, 3)), "every neighbour pulls the marked cell"
    with pytest.raises(ValueError, match="content"):
        warp.weights(motion, 1)


def test_warp_keys_model_trains_its_keys():
    model = small_model(merge="warp", object_input="anchor", anchor="before", temporal_fusion="mean",
                        temporal_position=False, warp_window=5, pixel_warp=True, down_content=1, warp_keys="object")
    video = clip()
    out = model(video, step=0, anchor=video[:, :, 0])
    out["recon"].mean().backward()
    assert model.decoder.warp.to_query.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="warp_keys"):
        MosoConfig(warp_keys="object")


def test_hard_warp_copies_from_one_offset_and_passes_the_softmax_gradient():
    soft, hard = OffsetWarp(channels=2, window=3), OffsetWarp(channels=2, window=3, hard=True)
    hard.load_state_dict(soft.state_dict())
    motion = torch.randn(2, 2, 5, 5, requires_grad=True)
    w_soft, w_hard = soft.weights(motion, 2), hard.weights(motion, 2)
    assert torch.allclose(w_hard.detach(), one_hot_largest(w_soft.detach()), atol=1e-6)
    assert torch.allclose(w_hard.detach().sum(dim=2), torch.ones(1, 2, 5, 5))
    target = torch.randn_like(w_soft)
    g_soft, = torch.autograd.grad((w_soft * target).sum(), motion)
    g_hard, = torch.autograd.grad((w_hard * target).sum(), motion)
    assert torch.allclose(g_soft, g_hard)  # straight-through: the backward pass is the softmax's
    with torch.no_grad():
        assert torch.equal(hard.weights(motion, 2), one_hot_largest(w_soft.detach()))
    with pytest.raises(ValueError, match="warp_choice"):
        MosoConfig(warp_choice="hard")


def test_warp_temperature_divides_the_offset_logits_and_can_change_after_training():
    base, cold = OffsetWarp(channels=2, window=3), OffsetWarp(channels=2, window=3, temperature=0.25)
    cold.load_state_dict(base.state_dict())
    motion = torch.randn(2, 2, 5, 5)
    logits = rearrange(base.to_logits(motion), "(b t) k h w -> b t k h w", t=2)
    assert torch.allclose(cold.weights(motion, 2), (logits / 0.25).softmax(dim=2), atol=1e-6)
    assert (cold.weights(motion, 2).amax(dim=2) >= base.weights(motion, 2).amax(dim=2) - 1e-6).all()
    model = small_model(merge="warp", object_input="anchor", anchor="before", temporal_fusion="mean",
                        temporal_position=False, warp_window=3, pixel_warp=True, down_content=1).eval()
    video = clip()
    with torch.no_grad():
        warm = model(video, anchor=video[:, :, 0])["recon"]
        model.set_warp_temperature(0.25)
        sharp = model(video, anchor=video[:, :, 0])["recon"]
    assert model.decoder.warp.temperature == model.decoder.fine.temperature == model.cfg.warp_temperature == 0.25
    assert not torch.allclose(warm, sharp)
    with pytest.raises(ValueError, match="positive"):
        model.set_warp_temperature(0)
    with pytest.raises(ValueError, match="warp_temperature"):
        MosoConfig(warp_temperature=0.5)  # needs merge: warp
    with pytest.raises(ValueError, match="positive"):
        MosoConfig(merge="warp", warp_temperature=-1.0)
    with pytest.raises(ValueError, match="merge: warp"):
        small_model().set_warp_temperature(0.5)


def test_warp_targets_name_the_offset_the_content_came_from():
    model = small_model(merge="warp", object_input="anchor", anchor="before", temporal_fusion="mean",
                        temporal_position=False, warp_window=3, down_content=0)
    anchor = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    # frame 0: the anchor itself; frame 1: pixel (y, x) shows the anchor's (y, x + 1)
    video = torch.stack([anchor, torch.cat([anchor[..., 1:], anchor[..., -1:]], dim=-1)], dim=2)
    targets = model.warp_targets(video, anchor)
    assert targets.shape == (1, 2, 8, 8)
    inner = (slice(1, -1), slice(1, -1))  # at the borders repeated pixels tie with the true offset
    assert (targets[0, 0][inner] == 4).all()  # no move: the centre of the 3x3 window
    assert (targets[0, 1][inner] == 5).all()  # one cell to the right


def test_fine_matching_finds_the_pixel_the_pooled_costs_cannot():
    """A move of 3 pixels is 1.5 cells of 2 pixels, which a cell's offset cannot name. Around the
    cell's best coarse offset, the fine costs name the remaining pixel, exactly (a zero cost)."""
    anchor = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    frame = torch.cat([anchor[..., 3:], anchor[..., -1:].expand(-1, -1, -1, 3)], dim=-1)  # (y, x) shows (y, x + 3)
    video = torch.stack([anchor, frame], dim=2)
    inner = (slice(1, -1), slice(1, -3))  # cells whose sources lie inside the frame
    for best, pixel in ((12, None), (13, 5), (14, 3)):  # coarse: no move, one cell right, two cells right
        coarse = torch.zeros(1, 25, 2, 8, 8)
        coarse[:, best] = 1  # every cell's best coarse offset
        fine = fine_matching(video, anchor, coarse)[0, :, 1][(slice(None), *inner)]
        if pixel is None:  # no pixel completes a move of 0 cells to 3 pixels
            assert (fine.amax(dim=0) < 0).all()
        else:  # +1 pixel after 1 cell, -1 pixel after 2 cells
            assert (fine[pixel] == 0).all() and (fine.argmax(dim=0) == pixel).all()
    coarse = local_matching(torch.nn.functional.avg_pool2d(video.flatten(0, 1), 2).unflatten(0, (1, 3)),
                            torch.nn.functional.avg_pool2d(anchor, 2), 5)
    assert fine_matching(video, anchor, coarse).shape == (1, 9, 2, 8, 8)


def test_fine_matching_is_an_extra_motion_input():
    model = small_model(merge="warp", object_input="anchor", anchor="before", temporal_fusion="mean",
                        temporal_position=False, warp_window=5, pixel_warp=True, down_content=1,
                        motion_input="matching", fine_matching=True)
    assert model.encoders["motion"].frame_stack.net[0].in_channels == 25 + 9 + 3
    video, anchor = clip(), clip()[:, :, 0]
    assert model(video, step=0, anchor=anchor)["recon"].shape == video.shape
    with pytest.raises(ValueError, match="fine_matching needs motion_input: matching"):
        MosoConfig(fine_matching=True)


def test_motion_res_depth_deepens_only_the_motion_encoder():
    from models.blocks import ResidualBlock

    def blocks(module) -> int:
        return sum(isinstance(m, ResidualBlock) for m in module.modules())

    base, deep = small_model(res_depth=1), small_model(res_depth=1, motion_res_depth=3)
    assert blocks(base.encoders["motion"].res) == 1 and blocks(deep.encoders["motion"].res) == 3
    for name in ("scene", "object"):  # the other stacks keep res_depth
        assert blocks(deep.encoders[name]) == blocks(base.encoders[name])
    assert blocks(deep.decoder) == blocks(base.decoder)
    assert deep(clip(), step=0)["recon"].shape == (2, 3, 8, 32, 32)
    with pytest.raises(ValueError, match="motion_res_depth must be >= 0"):
        MosoConfig(motion_res_depth=-1)


def test_pixel_warp_moves_anchor_pixels_at_full_resolution():
    """Weights made at the merge resolution move the full-resolution frame by dilation-sized steps."""
    warp = OffsetWarp(channels=2, window=3)
    image = torch.rand(1, 3, 8, 8)
    weights = torch.zeros(1, 2, 9, 4, 4)
    weights[:, 0, 4] = 1  # frame 0: identity
    weights[:, 1, 5] = 1  # frame 1: take the cell one to the right, i.e. two pixels at full resolution
    moved = warp.move(image, weights, dilation=2, border="replicate")
    assert torch.equal(moved[0], image[0])
    assert torch.equal(moved[1, :, :, :-2], image[0, :, :, 2:])
    assert torch.equal(moved[1, :, :, -2:], image[0, :, :, -1:].expand(-1, -1, 2))  # borders repeat


def test_dilated_move_gives_each_cell_its_own_offset_weights():
    """With dilation d each merge cell's weights (differing per cell and frame) move exactly its own
    d x d pixels, by offsets of d pixels: against a per-pixel sum over the window's shifted copies."""
    torch.manual_seed(0)
    window, d, size = 3, 2, 8
    image = torch.rand(2, 3, size, size)
    weights = torch.rand(2, 3, window**2, size // d, size // d).softmax(dim=2)
    padded = F.pad(image, (d, d, d, d), mode="replicate")
    per_pixel = weights.repeat_interleave(d, dim=3).repeat_interleave(d, dim=4)
    expected = sum(per_pixel[:, :, k, None] * padded[:, None, :, d * (k // window):d * (k // window) + size,
                                                     d * (k % window):d * (k % window) + size]
                   for k in range(window**2))
    moved = move_by(image, weights, window, dilation=d, border="replicate")
    assert torch.allclose(moved, rearrange(expected, "b t c h w -> (b t) c h w"), atol=1e-6)


def test_copy_error_rewards_one_right_offset_over_a_blend_that_averages_right():
    """The expected copy error (model.warp_copy_weight) is zero for the right offset alone, and
    positive for a 50/50 blend of its two neighbours, whose mixture matches the target just as well."""
    model = small_model(merge="warp", object_input="anchor", anchor="before", temporal_fusion="mean",
                        temporal_position=False, warp_window=3, down_content=0)
    ramp = torch.arange(8.0).repeat(8, 1)  # x = column: a linear ramp, so the mean of x-1 and x+1 is x
    image = ramp.expand(1, 3, 8, 8).contiguous()
    video = image[:, :, None]  # one frame: the anchor itself (no move)
    right = torch.zeros(1, 1, 9, 8, 8)
    right[:, :, 4] = 1  # the centre offset
    blend = torch.zeros(1, 1, 9, 8, 8)
    blend[:, :, 3] = blend[:, :, 5] = 0.5  # one cell left and one cell right
    inner = (slice(1, -1), slice(1, -1))
    for weights in (right, blend):  # both moves reproduce the target inside the border
        moved = model.decoder.warp.move(image, weights, border="replicate")
        assert torch.allclose(moved[0][:, 1:-1, 1:-1], image[0][:, 1:-1, 1:-1])
    assert torch.equal(model.copy_error_map(image, video, right)[0, 0][inner], torch.zeros(6, 6))
    assert torch.allclose(model.copy_error_map(image, video, blend)[0, 0][inner], torch.ones(6, 6))  # (+-1)^2


def test_copy_error_map_scores_the_copy_the_two_warps_compose():
    """With one-hot weights the expected copy error is the error of what the decoder's two warps
    actually copy (coarse 2-pixel steps, then the fine warp reading the coarse result at p + j);
    with soft weights it is at least the error of the blend, and above it where the blend hides errors."""
    model = small_model(merge="warp", object_input="anchor", anchor="before", temporal_fusion="mean",
                        temporal_position=False, warp_window=5, pixel_warp=True, down_content=1)
    gen = torch.Generator().manual_seed(3)
    anchor, video = torch.rand(2, 3, 16, 16, generator=gen), torch.rand(2, 3, 4, 16, 16, generator=gen)
    coarse_logits, fine_logits = torch.randn(2, 4, 25, 8, 8, generator=gen), torch.randn(2, 4, 9, 16, 16, generator=gen)
    for one_hot in (True, False):
        coarse, fine = ((one_hot_largest(coarse_logits), one_hot_largest(fine_logits)) if one_hot
                        else (coarse_logits.softmax(dim=2), fine_logits.softmax(dim=2)))
        moved = model.decoder.warp.move(anchor, coarse, dilation=2, border="replicate")
        moved = model.decoder.fine.move(moved, rearrange(fine, "b t k h w -> (b t) 1 k h w"), border="replicate")
        blend_error = rearrange((moved - rearrange(video, "b c t h w -> (b t) c h w")).square().mean(dim=1),
                                "(b t) h w -> b t h w", b=2)[..., 1:-1, 1:-1]  # the border pixels replicate
        expected = model.copy_error_map(anchor, video, coarse, fine)[..., 1:-1, 1:-1]
        if one_hot:
            assert torch.allclose(expected, blend_error, atol=1e-5)
        else:
            assert (expected >= blend_error - 1e-5).all() and float((expected - blend_error).mean()) > 0.01
    # the loss trains the coarse warp; the fine warp's weights only weigh the draw
    coarse, fine = coarse_logits.softmax(dim=2).requires_grad_(), fine_logits.softmax(dim=2).requires_grad_()
    model.copy_error_map(anchor, video, coarse, fine).mean().backward()
    assert coarse.grad is not None and float(coarse.grad.abs().sum()) > 0 and fine.grad is None


def test_pixel_warp_model_exposes_both_warps_in_training():
    """Training reads both warps' weights, in frame order however the frames were decoded."""
    model = small_model(merge="warp", object_input="anchor", anchor="before", temporal_fusion="mean",
                        temporal_position=False, warp_window=5, pixel_warp=True, down_content=1)
    video, anchor = clip(), clip()[:, :, 0]
    out = model(video, step=0, anchor=anchor)
    assert out["warp_weights"].shape == (2, 8, 25, 16, 16) and out["fine_weights"].shape == (2, 8, 9, 32, 32)
    assert torch.allclose(out["fine_weights"].sum(dim=2), torch.ones(2, 8, 32, 32))
    model.eval()
    assert "fine_weights" not in model(video, anchor=anchor)
    with torch.no_grad():
        codes = model.encode(video, anchor=anchor)["codes"]
        whole = model.decode_with_warp(codes, anchor)
        model.set_chunk_frames(4)  # decoded in chunks of frames: the same parts, put back in order
        chunked = model.decode_with_warp(codes, anchor)
    for got, want in zip(chunked, whole):
        assert torch.allclose(got, want, atol=1e-5)


def test_pixel_warp_model_decodes_from_its_codes_and_the_anchor_frame():
    model = small_model(merge="warp", object_input="anchor", anchor="before", temporal_fusion="mean",
                        temporal_position=False, warp_window=5, pixel_warp=True, down_content=1)
    video, anchor = clip(), clip()[:, :, 0]
    out = model(video, step=0, anchor=anchor)
    assert model.decodes_from_anchor and out["recon"].shape == video.shape
    out["recon"].mean().backward()
    assert model.decoder.to_keep.weight.grad is not None
    codes = model.encode(video, anchor=anchor)["codes"]
    with pytest.raises(ValueError, match="anchor"):
        model.decode(codes)
    with torch.no_grad():
        assert not torch.equal(model.decode(codes, anchor=anchor), model.decode(codes, anchor=-anchor))
        # the scene-only diagnostic leaves the moved pixels out
        assert torch.equal(model.decode(codes, 1.0, anchor=anchor), model.decode(codes, 1.0, anchor=-anchor))
    with pytest.raises(ValueError, match="pixel_warp"):
        MosoConfig(pixel_warp=True, merge="warp", anchor="first")


def test_bad_geometry_is_a_clear_error():
    with pytest.raises(ValueError, match="divisible"):
        MosoVQVAE(MosoConfig(**SMALL), frames=8, resolution=36)
    with pytest.raises(ValueError, match="max_frames"):
        MosoVQVAE(MosoConfig(**SMALL, max_frames=4), frames=8, resolution=32)


def test_collapse_diagnostics_score_a_static_decoder_zero_and_a_perfect_one_one():
    from tools.experiments.decomposition import temporal_mean_psnr, temporal_variance_ratio

    video = clip(batch=3)
    static = video.mean(dim=2, keepdim=True).expand_as(video)  # the best motion-blind output
    assert float(temporal_variance_ratio(static, video)) < 1e-6
    assert float(temporal_variance_ratio(video, video)) == pytest.approx(1.0)
    assert float(temporal_mean_psnr(video)) == pytest.approx(float(psnr_per_frame(static, video).mean()))
    assert float(temporal_mean_psnr(static)) == 100.0  # a still clip is its own temporal mean


def test_collapsing_first_stage_is_warned_about():
    from tools.experiments.decomposition import COLLAPSE_RATIO
    from tools.experiments.first_stage import FirstStageTask

    warn = FirstStageTask.sample_warnings
    assert warn(None, {"decomp/temporal_variance_ratio": COLLAPSE_RATIO / 10})
    assert not warn(None, {"decomp/temporal_variance_ratio": 0.9})
