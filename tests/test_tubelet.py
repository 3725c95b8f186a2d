"""The tubelet baseline's modules: autoencoder shapes and FSQ round trips, ALiBi, causality, KV-cache
sampling against full recomputation, no future leakage (CPU, seconds)."""
from __future__ import annotations

import pytest
import torch

from models.interface import Predictor, rollout
from models.tubelet_autoencoder import TubeletAutoencoder, TubeletAutoencoderConfig, TubeletTokens
from models.tubelet_predictor import TubeletPredictor, TubeletSamplingConfig
from models.tubelet_transformer import (KVCache, TubeletTransformer, alibi_bias, alibi_slopes, filter_logits,
                                        generate, sample_token)

TINY_AE = {"frames": 4, "resolution": 16, "tubelet": [2, 4, 4], "channels": 8, "res_blocks": 1,
           "pixel_channels": 4, "levels": [4, 3, 3]}
TINY_NET = {"dim": 16, "depth": 2, "heads": 4}


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def tiny_net(vocab: int = 36, seed: int = 0, **cfg) -> TubeletTransformer:
    torch.manual_seed(seed)
    return TubeletTransformer({**TINY_NET, **cfg}, vocab).eval()


def tiny_predictor(**sampling) -> TubeletPredictor:
    torch.manual_seed(0)
    ae = TubeletAutoencoder(TINY_AE).eval()
    return TubeletPredictor(ae, tiny_net(ae.codebook_size), cond_frames=2, frames=4,
                            sampling=TubeletSamplingConfig(**sampling))


# ----------------------------------------------------------------------------- autoencoder
@pytest.mark.parametrize("tubelet,grid", [([2, 4, 4], (4, 4, 4)), ([4, 8, 8], (2, 2, 2)), ([1, 2, 4], (8, 8, 4))])
def test_tubelet_round_trip_shapes(tubelet, grid):
    ae = TubeletAutoencoder({**TINY_AE, "frames": 8, "tubelet": tubelet}).eval()
    clip = rand(2, 3, 8, 16, 16)
    with torch.no_grad():
        out = ae.encode(clip)
        recon = ae.decode(out["codes"])
    assert out["codes"].shape == (2, 3, *grid) and out["indices"].shape == (2, *grid) == (2, *ae.token_grid())
    assert recon.shape == clip.shape and recon.abs().max() <= 1 and ae(clip).shape == clip.shape
    assert ae.encode(rand(1, 3, 16, 16, 16))["indices"].shape[1] == 16 // tubelet[0]  # any whole number of tubelets
    with pytest.raises(ValueError, match="not divisible into tubelets"):
        ae.encode(rand(1, 3, 8 + 1, 16, 16) if tubelet[0] > 1 else rand(1, 3, 8, 15, 15))
    with pytest.raises(ValueError, match="tubelet must be"):
        TubeletAutoencoderConfig(tubelet=[2, 4])


def test_fsq_indices_codes_round_trip():
    ae = TubeletAutoencoder(TINY_AE).eval()
    assert ae.codebook_size == 4 * 3 * 3
    with torch.no_grad():
        out = ae.encode(rand(2, 3, 4, 16, 16))
        assert torch.equal(ae.codes_from_indices(out["indices"]), out["codes"])
        book = ae.codebook()
    assert book.shape == (36, 3) and book.abs().max() <= 1 and len(book.unique(dim=0)) == 36  # every code distinct
    assert torch.equal(ae.quantizer.fsq.codes_to_indices(book).long(), torch.arange(36))
    grid = torch.arange(36).reshape(1, 1, 6, 6)
    assert torch.equal(ae.quantizer.fsq.codes_to_indices(ae.codes_from_indices(grid).permute(0, 2, 3, 4, 1)).long(), grid)


def test_encoder_never_mixes_time_steps():
    """The tokens of the first frames do not depend on the frames after them (the observed frames'
    tokens are the same alone as inside a longer clip)."""
    ae = TubeletAutoencoder(TINY_AE).eval()
    clip = rand(2, 3, 8, 16, 16)
    changed = clip.clone()
    changed[:, :, 4:] = rand(2, 3, 4, 16, 16, seed=1)
    with torch.no_grad():
        a, b = ae.encode(clip)["indices"], ae.encode(changed)["indices"]
        alone = ae.encode(clip[:, :, :4])["indices"]
    assert torch.equal(a[:, :2], b[:, :2]) and torch.equal(a[:, :2], alone) and not torch.equal(a, b)


def test_extract_tokens_cover_observed_and_future_frames():
    ae = TubeletAutoencoder(TINY_AE).eval()
    tokens = TubeletTokens(ae, cond_frames=2)
    video = rand(3, 3, 6, 16, 16)
    assert tokens.shapes == {"tokens": (3, 4, 4)} and tokens.codebook_size == 36
    assert torch.equal(tokens.encode(video)["tokens"], ae.encode(video)["indices"])
    assert tokens.codebook().shape == (36, 3) and tokens.meta()["levels"] == [4, 3, 3]
    with pytest.raises(ValueError, match="not whole tubelets"):
        TubeletTokens(ae, cond_frames=1)


# ----------------------------------------------------------------------------- ALiBi and causality
def test_alibi_bias_matches_the_formula():
    heads, n = 8, 5
    slopes = alibi_slopes(heads)
    assert torch.allclose(slopes, torch.tensor([2.0 ** (-8 * i / heads) for i in range(1, heads + 1)]))
    assert torch.allclose(slopes, torch.tensor([1 / 2 ** i for i in range(1, 9)]))  # the paper's 1/2 ... 1/256
    bias = alibi_bias(slopes, torch.arange(n), torch.arange(n))
    assert bias.shape == (heads, n, n)
    for h in range(heads):
        for i in range(n):
            for j in range(n):
                expected = -slopes[h] * (i - j) if j <= i else float("-inf")
                assert bias[h, i, j] == pytest.approx(expected)
    # a query at position 7 over cached keys 3..7 gets the rows of those distances
    assert torch.equal(alibi_bias(slopes, torch.tensor([7]), torch.arange(3, 8))[:, 0], bias[:, 4, :])
    assert torch.allclose(alibi_slopes(4), torch.tensor([2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8]))


def test_changing_a_later_token_never_changes_an_earlier_logit():
    net = tiny_net()
    tokens = torch.randint(0, 36, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        base = net(tokens)
        for p in (0, 5, 11):
            changed = tokens.clone()
            changed[:, p] = (changed[:, p] + 1) % 36
            out = net(changed)
            assert torch.equal(out[:, :p], base[:, :p])
            assert not torch.allclose(out[:, p], base[:, p])


def test_no_position_embedding_and_longer_sequences_than_trained():
    net = tiny_net()
    assert not [n for n, _ in net.named_parameters() if "pos" in n]
    with torch.no_grad():
        assert net(torch.randint(0, 36, (1, 1000))).shape == (1, 1000, 36)  # no maximum length


# ----------------------------------------------------------------------------- sampling
def test_filters_and_temperature():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    assert torch.isinf(filter_logits(logits, top_k=2)[0, 2:]).all() and filter_logits(logits, top_k=2)[0, :2].isfinite().all()
    probs = logits.softmax(-1)[0]  # 0.64, 0.24, 0.09, 0.03
    nucleus = filter_logits(logits, top_p=0.8)[0]
    assert nucleus[:2].isfinite().all() and torch.isinf(nucleus[2:]).all() and probs[0] < 0.8 <= probs[:2].sum()
    assert filter_logits(logits, top_p=0.1)[0].isfinite().sum() == 1  # the most likely token always stays
    assert sample_token(logits, None, temperature=0).item() == 0
    draws = [sample_token(logits, torch.Generator().manual_seed(s), top_k=2).item() for s in range(50)]
    assert set(draws) == {0, 1}
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert [sample_token(logits, g1).item() for _ in range(20)] == [sample_token(logits, g2).item() for _ in range(20)]


@pytest.mark.parametrize("options", [{}, {"top_k": 5}, {"top_p": 0.7, "temperature": 0.8}])
def test_kv_cache_sampling_equals_full_recomputation(options):
    net = tiny_net().double()
    context = torch.randint(0, 36, (3, 7), generator=torch.Generator().manual_seed(1))
    cached = generate(net, context, 20, torch.Generator().manual_seed(5), kv_cache=True, **options)
    full = generate(net, context, 20, torch.Generator().manual_seed(5), kv_cache=False, **options)
    assert cached.shape == (3, 20) and torch.equal(cached, full)
    assert not torch.equal(generate(net, context, 20, torch.Generator().manual_seed(6), **options), cached)


def test_kv_cache_logits_equal_the_full_forward_and_the_window_trims_it():
    net = tiny_net().double()
    tokens = torch.randint(0, 36, (2, 10), generator=torch.Generator().manual_seed(2))
    cache = KVCache(len(net.blocks))
    with torch.no_grad():
        steps = [net(tokens[:, :4], cache)] + [net(tokens[:, i:i + 1], cache) for i in range(4, 10)]
        assert torch.allclose(torch.cat(steps, dim=1), net(tokens), atol=1e-10)
        windowed = KVCache(len(net.blocks), context=3)
        for i in range(10):
            net(tokens[:, i:i + 1], windowed)
    assert windowed.keys[0].shape[2] == 3 and windowed.positions.tolist() == [7, 8, 9] and windowed.length == 10
    # one layer: a cached window is exactly a recomputed window (the keys depend on the token alone)
    one = tiny_net(depth=1).double()
    context = tokens[:, :6]
    a = generate(one, context, 8, torch.Generator().manual_seed(0), kv_cache=True, window=4)
    b = generate(one, context, 8, torch.Generator().manual_seed(0), kv_cache=False, window=4)
    assert torch.equal(a, b)


# ----------------------------------------------------------------------------- predictor
def test_predictor_interface_rollout_and_cache_equality():
    predictor = tiny_predictor()
    assert isinstance(predictor, Predictor) and (predictor.frames, predictor.cond_frames) == (4, 2)
    observed = rand(2, 3, 2, 16, 16)
    a = predictor.predict(observed, torch.Generator().manual_seed(5))
    assert a.shape == (2, 3, 4, 16, 16) and a.abs().max() <= 1
    assert torch.equal(predictor.predict(observed, torch.Generator().manual_seed(5)), a)
    assert torch.equal(predictor.predict(observed, torch.Generator().manual_seed(5), kv_cache=False), a)
    longer = rollout(predictor, observed, 12, torch.Generator().manual_seed(5))  # 3x the trained clip: one pass
    assert longer.shape == (2, 3, 12, 16, 16)
    assert predictor.rollout(observed, 5, torch.Generator().manual_seed(5)).shape[2] == 5  # not a whole tubelet
    assert predictor.reconstruct(observed, rand(2, 3, 4, 16, 16)).shape == (2, 3, 4, 16, 16)
    assert predictor.settings(top_k=3)["sampling_top_k"] == 3
    with pytest.raises(ValueError, match="do not apply"):
        predictor.predict(observed, torch.Generator().manual_seed(5), beams=2)
    with pytest.warns(UserWarning, match="ignores the diffusion sampling options"):  # validate.py --sampler/--steps
        assert torch.equal(predictor.predict(observed, torch.Generator().manual_seed(5), sampler="dpm", steps=2), a)
    assert predictor.settings(steps=2)["ignored_sample_options"] == ["steps"]
    with pytest.raises(ValueError, match="one tubelet"):
        predictor.predict(observed[:, :, :1])


def test_no_future_leakage():
    """The prediction (fixed seed) reads only the observed frames: the same for clips that differ
    after them, another for other observed frames."""
    predictor = tiny_predictor()
    video = rand(2, 3, 6, 16, 16)
    changed = video.clone()
    changed[:, :, 2:] = rand(2, 3, 4, 16, 16, seed=9)
    pred = predictor.predict(video[:, :, :2], torch.Generator().manual_seed(5))
    assert torch.equal(predictor.predict(changed[:, :, :2], torch.Generator().manual_seed(5)), pred)
    assert not torch.equal(predictor.predict(video[:, :, :2].flip(2), torch.Generator().manual_seed(5)), pred)
