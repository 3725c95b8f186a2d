"""The built-in shapes dataset: format, determinism, disjoint splits, masks, registry errors."""
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tools.config import DataConfig, ShapesConfig
from tools.datasets import DATASETS, DatasetError, build_dataset
from tools.datasets.shapes import SHAPE_NAMES, render_clip, signed_distance
from tools.seeding import sample_rng


def small(**shapes) -> DataConfig:
    return DataConfig(name="shapes", resolution=32, frames=8,
                      shapes=ShapesConfig(num_train=50, num_test=10, **shapes))


def test_item_format_and_range():
    ds = build_dataset(small(), "train", seed=0)
    item = ds[3]
    video, mask = item["video"], item["mask"]
    assert video.shape == (3, 8, 32, 32) and video.dtype == torch.float32
    assert mask.shape == (8, 32, 32) and mask.dtype == torch.int64
    assert item["index"] == 3
    assert video.min() >= -1 and video.max() <= 1
    assert len(ds) == 50 and len(build_dataset(small(), "test")) == 10
    assert ds.skipped == [] and ds.num_found == 50


def test_accepts_omegaconf_node_and_sampler_keys():
    cfg = OmegaConf.structured(small())
    ds = build_dataset(cfg, "train", seed=1)
    a, b = ds[5], ds[(5, 1234)]  # the draw number does not change a shapes clip
    assert torch.equal(a["video"], b["video"]) and b["index"] == 5


def test_deterministic_per_index_and_independent_of_seed():
    a = build_dataset(small(), "train", seed=0)
    b = build_dataset(small(), "train", seed=7)
    for i in (0, 1, 17):
        assert torch.equal(a[i]["video"], b[i]["video"])
        assert torch.equal(a[i]["mask"], b[i]["mask"])
    assert not torch.equal(a[0]["video"], a[1]["video"])


def test_train_and_test_are_disjoint():
    train = build_dataset(small(), "train")
    test = build_dataset(small(), "test")
    train_clips = torch.stack([train[i]["video"] for i in range(len(train))])
    for i in range(len(test)):
        diff = (train_clips - test[i]["video"]).abs().flatten(1).max(dim=1).values
        assert diff.min() > 0.1


def test_sprite_count_and_masks_follow_occlusion():
    cfg = small(min_sprites=3, max_sprites=3)
    ds = build_dataset(cfg, "train")
    for i in range(5):
        item = ds[i]
        labels = set(item["mask"].unique().tolist())
        assert labels <= {0, 1, 2, 3} and 0 in labels
        assert len(labels - {0}) >= 2  # three sprites; one may be hidden behind another at most
    # The front sprite's mask is where the clip differs from a render without it (same rng stream).
    rng = sample_rng(99)
    frames, mask, _ = render_clip(rng, 6, 32, ShapesConfig(min_sprites=1, max_sprites=1))
    assert set(np.unique(mask)) == {0, 1}
    assert 0.02 < (mask == 1).mean() < 0.5


def test_sprites_move_and_background_is_static():
    frames, mask, _ = render_clip(sample_rng(5), 8, 32, ShapesConfig(min_sprites=1, max_sprites=1,
                                                                   min_speed=0.04, max_speed=0.04))
    # The sprite moves: its mask changes over time.
    assert not np.array_equal(mask[0], mask[-1])
    # Pixels that are background in every frame (away from antialiased edges) do not change.
    near = mask > 0
    for _ in range(2):  # grow by two pixels: antialiased tips of triangles etc. are below 1/2 coverage
        p = np.pad(near, ((0, 0), (1, 1), (1, 1)))
        near = p[:, 1:-1, 1:-1] | p[:, :-2, 1:-1] | p[:, 2:, 1:-1] | p[:, 1:-1, :-2] | p[:, 1:-1, 2:]
    always_bg = ~near.any(axis=0)
    assert np.allclose(frames[:, 0][:, always_bg], frames[:, -1][:, always_bg])
    assert always_bg.mean() > 0.3


def test_sprites_stay_inside_the_frame():
    cfg = ShapesConfig(min_sprites=1, max_sprites=1, min_speed=0.1, max_speed=0.1, min_size=0.3, max_size=0.3)
    for seed in range(10):
        _, mask, _ = render_clip(sample_rng(seed), 30, 32, cfg)
        assert (mask > 0).sum(axis=(1, 2)).min() > 0.5 * (mask > 0).sum(axis=(1, 2)).max()


def test_every_shape_has_an_inside():
    x, y = np.meshgrid(np.arange(-10, 11, dtype=np.float32), np.arange(-10, 11, dtype=np.float32))
    for shape in SHAPE_NAMES:
        d = signed_distance(shape, x, y, 8.0)
        assert d[10, 10] < 0 and d[0, 0] > 0, shape


def test_unknown_dataset_and_split_errors():
    with pytest.raises(DatasetError, match="available: .*shapes.*ucf101.*sky.*videofolder.*mmnist"):
        build_dataset(DataConfig(name="kinetics"), "train")
    with pytest.raises(DatasetError, match="split"):
        build_dataset(DataConfig(), "val")
    assert set(DATASETS) == {"shapes", "ucf101", "sky", "videofolder", "mmnist"}


def test_background_is_the_clip_without_sprites():
    frames, mask, background = render_clip(sample_rng(7), 6, 32, ShapesConfig(min_sprites=2, max_sprites=2))
    assert background.shape == (3, 32, 32)
    far = mask == 0
    for _ in range(2):  # stay clear of antialiased sprite edges (coverage below one half)
        p = np.pad(~far, ((0, 0), (1, 1), (1, 1)))
        far = ~(p[:, 1:-1, 1:-1] | p[:, :-2, 1:-1] | p[:, 2:, 1:-1] | p[:, 1:-1, :-2] | p[:, 1:-1, 2:])
    diff = np.abs(frames - background[:, None]).max(axis=0)  # [T, H, W]
    assert diff[far].max() < 1e-6  # where no sprite is, the frame is the background
    assert diff[mask > 0].mean() > 0.05  # where sprites are, it is not
