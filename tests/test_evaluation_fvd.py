"""Frechet distance against closed forms, KVD properties, and the I3D plumbing with a stand-in.

The I3D used here is a randomly initialised TorchScript stand-in with the interface of
``i3d_torchscript.pt``; nothing computed with it is FVD, and the code labels it ``fvd_standin``.
"""

import numpy as np
import pytest
import scipy.linalg
import torch

from evaluation.fvd import (
    FEATURE_DIM,
    I3D_ENV,
    I3D_FILENAME,
    build_i3d_standin,
    feature_stats,
    frechet_distance,
    frechet_distance_from_stats,
    kernel_distance,
    load_i3d,
    mmd2_unbiased,
    polynomial_kernel,
    preprocess_for_i3d,
    resolve_i3d_path,
    save_i3d_standin,
)
from evaluation.weights import MissingWeightsError


def _random_spd(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d))
    return a @ a.T + (1e-3 * np.eye(d) if rank is None else 0)


# ---------------------------------------------------------------- Frechet distance


def test_frechet_closed_form_diagonal_covariances():
    rng = np.random.default_rng(0)
    d = 16
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.uniform(0.1, 3, size=d), rng.uniform(0.1, 3, size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance_from_stats(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_frechet_closed_form_commuting_covariances():
    rng = np.random.default_rng(1)
    d = 10
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    a, b = rng.uniform(0.1, 2, size=d), rng.uniform(0.1, 2, size=d)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    mu = rng.normal(size=d)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance_from_stats(mu, s1, mu, s2) == pytest.approx(expected, rel=1e-8)


def test_frechet_general_covariances_against_symmetric_form():
    rng = np.random.default_rng(2)
    d = 12
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    root1 = scipy.linalg.sqrtm(s1).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2) - 2 * np.trace(scipy.linalg.sqrtm(root1 @ s2 @ root1).real)
    info = {}
    assert frechet_distance_from_stats(mu1, s1, mu2, s2, info) == pytest.approx(expected, rel=1e-9)
    assert info["sqrt_method"] == "scipy.linalg.sqrtm"
    # 1-D: (mu1 - mu2)^2 + (sigma1 - sigma2)^2
    assert frechet_distance_from_stats(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]])) == pytest.approx(5.0)


def test_frechet_from_samples_approaches_closed_form():
    rng = np.random.default_rng(3)
    d, n = 3, 40000
    mu1, mu2 = np.array([0.0, 1.0, -1.0]), np.array([0.5, 0.5, 0.0])
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    x = rng.multivariate_normal(mu1, s1, size=n)
    y = rng.multivariate_normal(mu2, s2, size=n)
    expected = frechet_distance_from_stats(mu1, s1, mu2, s2)
    assert frechet_distance(x, y) == pytest.approx(expected, rel=0.05)
    assert abs(frechet_distance(x, x)) < 1e-8


def test_frechet_with_fewer_samples_than_dimensions():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(30, FEATURE_DIM)), rng.normal(size=(40, FEATURE_DIM)) + 0.2
    value = frechet_distance(x, y)
    assert np.isfinite(value) and value > 0
    assert abs(frechet_distance(x, x)) < 1e-3 * value
    # singular covariances: both square-root routes agree
    mu, s1 = feature_stats(x)
    _, s2 = feature_stats(y)
    from evaluation.fvd import _trace_sqrt_product_eigh

    direct = np.sum((mu - y.mean(0)) ** 2) + np.trace(s1 + s2) - 2 * _trace_sqrt_product_eigh(s1, s2)
    assert value == pytest.approx(direct, rel=1e-6)


def test_feature_stats_ddof_and_errors():
    x = np.random.default_rng(5).normal(size=(10, 4))
    _, s1 = feature_stats(x, ddof=1)
    _, s0 = feature_stats(x, ddof=0)
    np.testing.assert_allclose(s1, np.cov(x, rowvar=False))
    np.testing.assert_allclose(s0 * 10 / 9, s1)
    with pytest.raises(ValueError, match="more than 1"):
        frechet_distance(x[:1], x)


# ---------------------------------------------------------------- KVD


def _kid_reference(x, y):
    """The one-subset KID estimator of StyleGAN2-ADA / StyleGAN-V, written out with loops."""
    m, d = len(x), x.shape[1]
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kvd_zero_for_identical_sets_and_positive_otherwise():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(64, 32))
    ids = np.arange(64)
    assert abs(kernel_distance(x, x, ids, ids)) < 1e-12
    y = rng.normal(size=(64, 32)) * 1.3 + 0.3
    assert kernel_distance(x, y, ids, ids) > 0
    assert kernel_distance(x, y) > 0
    # further apart -> larger
    z = rng.normal(size=(64, 32)) * 1.3 + 1.0
    assert kernel_distance(x, z) > kernel_distance(x, y)


def test_kvd_matches_kid_estimator_and_subsets_are_seeded():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(20, 8)), rng.normal(size=(20, 8)) + 0.5
    assert mmd2_unbiased(y, x) == pytest.approx(_kid_reference(y, x), rel=1e-10)
    assert polynomial_kernel(x[:2], y[:3]).shape == (2, 3)
    info = {}
    a = kernel_distance(x, y, num_subsets=5, max_subset_size=10, seed=3, info=info)
    assert a == kernel_distance(x, y, num_subsets=5, max_subset_size=10, seed=3)
    assert info["subsets"] == 5 and info["subset_size"] == 10
    # grouped (several samples per video), with subsets over videos
    ids_fake = np.repeat(np.arange(20), 2)
    fake = np.repeat(y, 2, axis=0) + 0.01 * rng.normal(size=(40, 8))
    info = {}
    value = kernel_distance(x, fake, np.arange(20), ids_fake, num_subsets=4, max_subset_size=8, info=info)
    assert np.isfinite(value) and info["subset_size"] == 8 and "same video" in info["estimator"]


# ---------------------------------------------------------------- I3D plumbing (stand-in)


def test_standin_has_the_detector_interface(tmp_path):
    module = build_i3d_standin(seed=0)
    assert isinstance(module, torch.jit.ScriptModule)
    assert module.rsvp_standin
    x = torch.rand(2, 3, 10, 224, 224) * 2 - 1
    feats = module(x, rescale=False, resize=False, return_features=True)
    assert feats.shape == (2, FEATURE_DIM)
    probs = module(x, rescale=False, resize=False, return_features=False)
    assert torch.allclose(probs.sum(1), torch.ones(2), atol=1e-5)
    # rescale/resize mirror the real module's options: [0, 255] input of another size
    small = ((x[:, :, :, ::4, ::4] + 1) * 127.5)
    assert module(small, rescale=True, resize=True, return_features=True).shape == (2, FEATURE_DIM)
    # deterministic for a seed
    assert torch.equal(build_i3d_standin(seed=0)(x, return_features=True), feats)


def test_load_i3d_from_path_env_and_default(tmp_path, monkeypatch):
    path = save_i3d_standin(tmp_path / "a" / "standin.pt")
    monkeypatch.delenv(I3D_ENV, raising=False)
    det = load_i3d(path)
    assert det.standin and det.describe()["sha256"] == "stand-in" and "stand-in" in det.label
    monkeypatch.setenv(I3D_ENV, str(path))
    assert resolve_i3d_path() == path
    assert load_i3d().standin
    monkeypatch.delenv(I3D_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected_default = tmp_path / "home" / ".cache" / "rsvp" / I3D_FILENAME
    assert resolve_i3d_path() == expected_default
    save_i3d_standin(expected_default)
    assert load_i3d().path == str(expected_default)


def test_missing_i3d_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(I3D_ENV, raising=False)
    with pytest.raises(MissingWeightsError) as err:
        load_i3d()
    message = str(err.value)
    assert I3D_FILENAME in message and I3D_ENV in message and "--i3d" in message
    assert str(tmp_path / ".cache" / "rsvp" / I3D_FILENAME) in message
    assert err.value.metric == "fvd"
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not torchscript")
    with pytest.raises(RuntimeError, match="not a loadable TorchScript"):
        load_i3d(bad)


def test_preprocess_for_i3d_resizes_crops_and_repeats_gray():
    x = torch.rand(2, 1, 4, 48, 64) * 2 - 1
    y = preprocess_for_i3d(x)
    assert y.shape == (2, 3, 4, 224, 224) and y.dtype == torch.float32
    assert y.min() >= -1 and y.max() <= 1
    # a constant video stays constant
    c = torch.full((1, 3, 4, 32, 32), 0.25)
    assert torch.allclose(preprocess_for_i3d(c), torch.full((1, 3, 4, 224, 224), 0.25))


def test_standin_features_through_the_wrapper(tmp_path):
    det = load_i3d(save_i3d_standin(tmp_path / "s.pt"), batch_size=3)
    videos = torch.rand(5, 3, 8, 32, 32) * 2 - 1
    feats = det.features(videos)
    assert feats.shape == (5, FEATURE_DIM) and feats.dtype == np.float64
    np.testing.assert_allclose(det.features(videos[:2]), feats[:2], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- the real detector, when present


@pytest.mark.slow
def test_real_i3d_constant_videos_reference():
    """With the real i3d_torchscript.pt: FVD between 16 black and 16 white 15-frame 64x64 videos.

    google-research's FVD example states "around 131" (TF-Hub module); the TorchScript port as used
    by common_metrics_on_video_quality is reported to give 134.24. Constant videos make the
    covariances vanish, so this checks the detector and its input convention, not the statistics.
    """
    path = resolve_i3d_path()
    if not path.is_file():
        pytest.skip(f"{I3D_FILENAME} not at {path}")
    det = load_i3d(path)
    assert not det.standin
    black = torch.full((16, 3, 15, 64, 64), -1.0)
    white = torch.full((16, 3, 15, 64, 64), 1.0)
    value = frechet_distance(det.features(black), det.features(white))
    assert 120 < value < 145
