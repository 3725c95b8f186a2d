"""Video indexing: symlink loops, frame folders that could not be read later."""
from __future__ import annotations

import os

from PIL import Image

from tools.datasets.index import find_videos, index_videos


def test_a_symlink_loop_is_walked_once(tmp_path):
    root = tmp_path / "data"
    for i in range(10):
        folder = root / ("a" if i < 5 else "loop")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"v{i}.mp4").write_bytes(b"")
    os.symlink("..", root / "loop" / "self")  # loop/self -> data
    os.symlink(str(root / "a"), root / "alias")  # the same folder under a second name
    found = find_videos(root)
    assert len(found) == 10
    assert sorted(p.name for p in found) == sorted(f"v{i}.mp4" for i in range(10))


def test_frame_folders_with_mixed_sizes_or_non_images_are_skipped_and_named(tmp_path, videos):
    root = tmp_path / "frames"
    good = videos.frames(root / "good", num_frames=6, height=20, width=20)
    mixed = videos.frames(root / "mixed", num_frames=6, height=20, width=20)
    Image.new("RGB", (32, 24)).save(mixed / "frame_4.png")
    fake = videos.frames(root / "fake", num_frames=6, height=20, width=20)
    (fake / "frame_3.png").write_text("not an image")
    entries, skipped = index_videos(find_videos(root), min_frames=4, cache_dir=str(tmp_path / "cache"), root=root)
    assert [e.path for e in entries] == [str(good)]
    reasons = dict(skipped)
    assert "frames of different sizes (20x20 in frame_1.png, 32x24 in frame_4.png)" in reasons[str(mixed)]
    assert "frame_3.png is not a readable image" in reasons[str(fake)]
    # the second start reads the verdicts from the cache, and a repaired folder is indexed again
    Image.new("RGB", (20, 20)).save(fake / "frame_3.png")
    os.utime(fake, ns=(0, 10**18))  # a folder's time changes when a file is replaced by another
    entries, skipped = index_videos(find_videos(root), min_frames=4, cache_dir=str(tmp_path / "cache"), root=root)
    assert sorted(e.path for e in entries) == sorted([str(good), str(fake)])
    assert [p for p, _ in skipped] == [str(mixed)]
