"""File-backed datasets (ucf101, sky, videofolder, mmnist) on tiny generated data."""
import warnings

import numpy as np
import pytest
import torch

from tools.config import DataConfig
from tools.datasets import DatasetError, build_dataset
from tools.datasets.clips import frames_to_clip
from tools.datasets.index import DataWarning, hash_split
from tools.loader import InfiniteSampler
from tools.seeding import sample_rng
from tools.video_io import read_video

T, RES = 4, 16


def cfg_for(name, root, tmp_path, **kw) -> DataConfig:
    return DataConfig(name=name, path=str(root), frames=kw.pop("frames", T), resolution=RES,
                      cache_dir=str(tmp_path / "cache"), **kw)


def check_item(item, frames=T):
    video = item["video"]
    assert video.shape == (3, frames, RES, RES) and video.dtype == torch.float32
    assert -1 <= video.min() and video.max() <= 1
    assert isinstance(item["index"], int)


def names(ds):
    return sorted(e.path.rsplit("/", 1)[-1] for e in ds.entries)


# --- ucf101 --------------------------------------------------------------------------------------

def make_ucf(root, videos, groups=(1, 2, 8, 9, 15, 22)):
    for cls in ("ApplyEyeMakeup", "Basketball"):
        for g in groups:
            videos.file(root / cls / f"v_{cls}_g{g:02d}_c01.avi", num_frames=12, height=24, width=32)


def test_ucf101_group_split_by_fold(tmp_path, videos):
    root = tmp_path / "UCF-101"
    make_ucf(root, videos)
    train = build_dataset(cfg_for("ucf101", root, tmp_path), "train")
    test = build_dataset(cfg_for("ucf101", root, tmp_path), "test")
    assert all("_g01_" in n or "_g02_" in n for n in names(test)) and len(test) == 4
    assert len(train) == 8 and not set(names(train)) & set(names(test))
    fold2 = build_dataset(cfg_for("ucf101", root, tmp_path, fold=2), "test")
    assert all("_g08_" in n or "_g09_" in n for n in names(fold2))
    check_item(train[0])
    check_item(test[(1, 5)])


def test_ucf101_official_lists(tmp_path, videos):
    root = tmp_path / "UCF-101"
    make_ucf(root, videos, groups=(1, 8, 9))
    lists = tmp_path / "ucfTrainTestlist"  # beside the video root, as unpacked from the zip
    lists.mkdir()
    # Case differs between lists and files in the real release; matching ignores it.
    (lists / "trainlist01.txt").write_text("ApplyEyeMakeup/v_applyeyemakeup_g08_c01.avi 1\n"
                                           "Basketball/v_Basketball_g08_c01.avi 2\n"
                                           "Basketball/v_Basketball_g99_c01.avi 2\n")
    (lists / "testlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n")
    for f in (2, 3):  # other folds exist but are not used
        (lists / f"trainlist0{f}.txt").write_text("Basketball/v_Basketball_g01_c01.avi 2\n")
        (lists / f"testlist0{f}.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g09_c01.avi\n")
    with pytest.warns(DataWarning, match="g99.*not on disk(.|\n)*in neither"):
        train = build_dataset(cfg_for("ucf101", root, tmp_path), "train")
    assert names(train) == ["v_ApplyEyeMakeup_g08_c01.avi", "v_Basketball_g08_c01.avi"]
    assert train.num_found == 3 and len(train.skipped) == 1
    with pytest.warns(DataWarning, match="in neither"):
        test = build_dataset(cfg_for("ucf101", root, tmp_path), "test")
        test3 = build_dataset(cfg_for("ucf101", root, tmp_path, fold=3), "test")
    assert names(test) == ["v_ApplyEyeMakeup_g01_c01.avi"]
    assert names(test3) == ["v_ApplyEyeMakeup_g09_c01.avi"]


def test_ucf101_names_without_group_use_hash_split(tmp_path, videos):
    root = tmp_path / "ucf"
    for i in range(10):
        videos.file(root / "Misc" / f"clip{i}.avi", num_frames=8, height=16, width=16)
    cfg = cfg_for("ucf101", root, tmp_path, test_fraction=0.3)
    test = build_dataset(cfg, "test")
    train = build_dataset(cfg, "train")
    assert len(test) == 3 and len(train) == 7
    assert set(names(test)) == {f"{n.split('/')[-1]}" for n in hash_split([f"Misc/clip{i}.avi" for i in range(10)], 0.3)}


# --- sky -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("train_name,test_name,nested", [("train", "test", False), ("sky_train", "sky_test", True)])
def test_sky_layouts(tmp_path, videos, train_name, test_name, nested):
    root = tmp_path / "sky_timelapse"
    for split, count in ((train_name, 3), (test_name, 2)):
        for v in range(count):
            if nested:  # the public release: <video>/<clip>/frames; each clip folder is one video
                for c in range(2):
                    videos.frames(root / split / f"vid{v}" / f"vid{v}_{c}", num_frames=6, height=20, width=20)
            else:
                videos.frames(root / split / f"vid{v}", num_frames=6, height=20, width=20, suffix=".jpg")
    per_video = 2 if nested else 1
    train = build_dataset(cfg_for("sky", root, tmp_path), "train")
    test = build_dataset(cfg_for("sky", root, tmp_path), "test")
    assert len(train) == 3 * per_video and len(test) == 2 * per_video
    check_item(train[(0, 3)])
    check_item(test[1])


def test_sky_split_folder_one_level_down(tmp_path, videos):
    videos.frames(tmp_path / "data" / "sky_timelapse" / "sky_test" / "a" / "a_1", num_frames=5)
    ds = build_dataset(cfg_for("sky", tmp_path / "data", tmp_path), "test")
    assert len(ds) == 1


# --- videofolder ---------------------------------------------------------------------------------

def test_videofolder_mixed_formats_and_hash_split(tmp_path, videos):
    root = tmp_path / "mine"
    videos.file(root / "a.avi", num_frames=10)
    videos.file(root / "sub" / "b.mp4", num_frames=10)
    videos.file(root / "sub" / "c.gif", num_frames=10)
    videos.frames(root / "frames" / "d", num_frames=10)
    videos.frames(root / ".thumbnails", num_frames=10)  # hidden: ignored
    cfg = cfg_for("videofolder", root, tmp_path, test_fraction=0.25)
    train, test = build_dataset(cfg, "train"), build_dataset(cfg, "test")
    assert len(test) == 1 and len(train) == 3
    assert set(names(train)) | set(names(test)) == {"a.avi", "b.mp4", "c.gif", "d"}
    for ds in (train, test):
        for i in range(len(ds)):
            check_item(ds[i])
    # Same split on a second build (stable) and from the cache.
    assert names(build_dataset(cfg, "test")) == names(test)


def test_videofolder_train_test_subfolders(tmp_path, videos):
    root = tmp_path / "mine"
    videos.file(root / "train" / "x.mp4", num_frames=8)
    videos.file(root / "train" / "y.mp4", num_frames=8)
    videos.frames(root / "test" / "z", num_frames=8)
    cfg = cfg_for("videofolder", root, tmp_path)
    assert names(build_dataset(cfg, "train")) == ["x.mp4", "y.mp4"]
    assert names(build_dataset(cfg, "test")) == ["z"]


def test_clip_content_is_cropped_resized_source_frames(tmp_path, videos):
    root = tmp_path / "one" / "train"
    path = videos.file(root / "v.mp4", num_frames=20, height=24, width=40)
    videos.file(tmp_path / "one" / "test" / "w.mp4", num_frames=20)
    cfg = cfg_for("videofolder", tmp_path / "one", tmp_path, frame_stride=2)
    ds = build_dataset(cfg, "train", seed=3)
    full = read_video(path)
    key = (0, 11)
    start = int(sample_rng(3, 11).integers(0, 20 - 7 + 1))  # span = (4 - 1) * 2 + 1 = 7
    expected = frames_to_clip(full[start:start + 7:2], RES)
    assert torch.equal(ds[key]["video"], expected)
    test = build_dataset(cfg, "test")  # test clips start at frame 0
    assert torch.equal(test[0]["video"], frames_to_clip(read_video(tmp_path / "one/test/w.mp4")[0:7:2], RES))


def test_train_start_is_a_function_of_the_key(tmp_path, videos):
    root = tmp_path / "v"
    for i in range(3):
        videos.file(root / f"{i}.avi", num_frames=30, seed=i)
    cfg = cfg_for("videofolder", root, tmp_path, test_fraction=0.0)
    a, b = build_dataset(cfg, "train", seed=0), build_dataset(cfg, "train", seed=0)
    keys = [k for k, _ in zip(InfiniteSampler(len(a), seed=0), range(8))]
    for key in keys:
        assert torch.equal(a[key]["video"], b[key]["video"])
    starts = {tuple(a[(0, d)]["video"][0, 0, 0, :4].tolist()) for d in range(8)}
    assert len(starts) > 1  # different draws give different clips of the same video
    other_seed = build_dataset(cfg, "train", seed=1)
    assert any(not torch.equal(a[k]["video"], other_seed[k]["video"]) for k in keys)


def test_mixed_loader_batches(tmp_path, videos):
    from tools.loader import build_loader

    root = tmp_path / "v"
    for i in range(4):
        videos.file(root / f"{i}.mp4", num_frames=12, seed=i)
    ds = build_dataset(cfg_for("videofolder", root, tmp_path, test_fraction=0.0), "train")
    batch = next(iter(build_loader(ds, 2, train=True, seed=0, num_workers=0)))
    assert batch["video"].shape == (2, 3, T, RES, RES) and batch["index"].shape == (2,)


# --- bad data ------------------------------------------------------------------------------------

def test_corrupt_and_short_videos_are_skipped_counted_named(tmp_path, videos):
    root = tmp_path / "bad"
    videos.file(root / "good1.mp4", num_frames=10)
    videos.file(root / "good2.avi", num_frames=10)
    videos.corrupt(root / "broken.avi")
    (root / "empty.mp4").write_bytes(b"")
    videos.file(root / "short.mp4", num_frames=2)
    videos.frames(root / "shortframes", num_frames=2)
    cfg = cfg_for("videofolder", root, tmp_path, test_fraction=0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = build_dataset(cfg, "train")
    data_warnings = [w for w in caught if issubclass(w.category, DataWarning)]
    assert len(data_warnings) == 1
    message = str(data_warnings[0].message)
    for name in ("broken.avi", "empty.mp4", "short.mp4", "shortframes"):
        assert name in message
    assert "skipped 4 of 6" in message
    assert ds.num_found == 6 and len(ds) == 2
    reasons = dict((p.rsplit("/", 1)[-1], r) for p, r in ds.skipped)
    assert reasons["short.mp4"].startswith("too short") and reasons["broken.avi"].startswith("unreadable")
    # A second build reads the cache and reports the same.
    with pytest.warns(DataWarning):
        again = build_dataset(cfg, "train")
    assert len(again) == 2 and len(again.skipped) == 4


def test_decode_failure_at_load_time_falls_back(tmp_path, videos, caplog):
    root = tmp_path / "v"
    for i in range(3):
        videos.file(root / f"{i}.mp4", num_frames=12, seed=i)
    ds = build_dataset(cfg_for("videofolder", root, tmp_path, test_fraction=0.0), "train")
    # The file goes bad after indexing.
    (root / "1.mp4").write_bytes(b"garbage")
    with caplog.at_level("WARNING", logger="rsvp.data"):
        item = ds[(1, 4)]
        again = ds[(1, 4)]
    assert item["index"] == 2 and torch.equal(item["video"], again["video"])
    assert sum("1.mp4" in r.getMessage() for r in caplog.records) == 1  # logged once
    with pytest.warns(DataWarning, match="1.mp4: unreadable"):
        fresh = build_dataset(cfg_for("videofolder", root, tmp_path, test_fraction=0.0), "train")
    assert len(fresh) == 2  # and skipped from the next start on


def test_shorter_than_indexed_moves_the_clip_back(tmp_path, videos):
    root = tmp_path / "v"
    videos.file(root / "a.mp4", num_frames=10)
    ds = build_dataset(cfg_for("videofolder", root, tmp_path, test_fraction=0.0), "train")
    entry = ds.entries[0]
    ds.entries[0] = type(entry)(entry.path, 30, entry.first_pts)  # an over-estimated frame count
    for draw in range(6):
        item = ds[(0, draw)]
        assert item["index"] == 0
    full = read_video(entry.path)
    starts = [int(sample_rng(0, d).integers(0, 30 - T + 1)) for d in range(6)]
    late = next(d for d, s in enumerate(starts) if s > 10 - T)
    assert torch.equal(ds[(0, late)]["video"], frames_to_clip(full[10 - T:], RES))


def test_no_usable_video_error_shows_layout(tmp_path, videos):
    root = tmp_path / "ucf"
    videos.file(root / "Class" / "v_Class_g01_c01.avi", num_frames=2)
    with pytest.raises(DatasetError, match=r"(?s)none is usable.*needs 4 frames.*Expected layout.*ucfTrainTestlist"):
        build_dataset(cfg_for("ucf101", root, tmp_path), "test")
    empty = tmp_path / "empty"
    (empty / "sky_train").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"(?s)found no videos.*Expected layout.*sky_train"):
        build_dataset(cfg_for("sky", empty, tmp_path), "train")
    with pytest.raises(DatasetError, match=r"(?s)found no videos.*Expected layout"):
        build_dataset(cfg_for("videofolder", empty, tmp_path), "train")


def test_missing_path_errors(tmp_path):
    with pytest.raises(DatasetError, match="--data_path"):
        build_dataset(DataConfig(name="ucf101"), "train")
    with pytest.raises(DatasetError, match="does not exist"):
        build_dataset(DataConfig(name="videofolder", path=str(tmp_path / "nope")), "train")
    with pytest.raises(DatasetError, match="sky_train"):
        build_dataset(DataConfig(name="sky", path=str(tmp_path)), "train")


# --- mmnist --------------------------------------------------------------------------------------

def test_mmnist(tmp_path):
    data = (np.arange(20 * 10 * 64 * 64) % 251).astype(np.uint8).reshape(20, 10, 64, 64)
    np.save(tmp_path / "mnist_test_seq.npy", data)
    cfg = DataConfig(name="mmnist", path=str(tmp_path), frames=8, resolution=64, test_fraction=0.2)
    train, test = build_dataset(cfg, "train"), build_dataset(cfg, "test")
    assert len(train) == 8 and len(test) == 2
    item = test[1]  # the last sequence, from frame 0
    expected = torch.from_numpy(data[:8, 9].astype(np.float32) / 127.5 - 1)
    assert torch.allclose(item["video"][0], expected) and torch.equal(item["video"][0], item["video"][2])
    check_item(build_dataset(DataConfig(name="mmnist", path=str(tmp_path / "mnist_test_seq.npy"),
                                        frames=T, resolution=RES), "train")[(3, 9)])
    import pickle
    assert len(pickle.dumps(train)) < 10_000  # workers get the path, not the array
    with pytest.raises(DatasetError, match="20 frames"):
        build_dataset(DataConfig(name="mmnist", path=str(tmp_path), frames=16, frame_stride=2), "train")
