"""Finding videos on disk, counting their frames fast, and caching the result.

- :func:`find_videos` walks a tree for video files (``tools.video_io.VIDEO_SUFFIXES``) and frame
  folders (leaf folders holding images; one folder = one video).
- :func:`index_videos` counts frames: frame folders by listing them and reading every image's
  header (a non-image or a different frame size skips the folder); video files with
  :func:`tools.video_io.probe_video` (container metadata, plus one decoded frame as a health
  check) in a thread pool, with a progress bar when there are many. Results are cached as JSON
  under ``data.cache_dir`` (default ``~/.cache/rsvp``), one file per dataset root, keyed by path,
  size and modification time, so a second start re-probes only what changed.
- Unreadable and too-short videos are skipped and reported in one warning
  (:func:`warn_skipped`); nothing stops.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

from PIL import Image
from tqdm import tqdm

from tools.video_io import IMAGE_SUFFIXES, VIDEO_SUFFIXES, list_frame_files, natural_key, probe_video

logger = logging.getLogger("rsvp.data")

CACHE_VERSION = 1
# Show a progress bar when more files than this need probing.
PROGRESS_MIN_FILES = 64
# Names listed in the skipped-videos warning before "... and N more".
MAX_NAMES_IN_WARNING = 20


class DataWarning(UserWarning):
    """Videos were left out of a dataset (unreadable, too short, missing)."""


@dataclass(frozen=True)
class VideoEntry:
    path: str  # a video file or a folder of frame images
    num_frames: int
    first_pts: Optional[int] = None  # timestamp of the first frame (video files)


def find_videos(root: Path) -> list[Path]:
    """Video files and frame folders under ``root`` (``root`` itself may be a frame folder), sorted.

    Hidden files and folders (``.name``) are ignored. Symbolic links are followed, but a folder
    reached twice (a link loop such as ``loop/self -> ..``, or an alias) is walked only once.
    """
    found: list[Path] = []
    image_dirs: list[str] = []
    visited: set[tuple[int, int]] = set()  # (device, inode) of folders walked: a symlink loop is walked once
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        stat = os.stat(dirpath)
        if (stat.st_dev, stat.st_ino) in visited:
            dirnames[:] = []
            continue
        visited.add((stat.st_dev, stat.st_ino))
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        files = [f for f in filenames if not f.startswith(".")]
        found.extend(Path(dirpath) / f for f in files if Path(f).suffix.lower() in VIDEO_SUFFIXES)
        if any(Path(f).suffix.lower() in IMAGE_SUFFIXES for f in files):
            image_dirs.append(dirpath)
    above = {os.path.dirname(d) for d in image_dirs}
    for d in list(above):  # every ancestor of a folder with images has images below it
        while d not in ("", os.path.dirname(d)):
            d = os.path.dirname(d)
            above.add(d)
    found.extend(Path(d) for d in image_dirs if d not in above)  # leaf folders of frames
    return sorted(found, key=lambda p: natural_key(p.relative_to(root).as_posix()))


def stable_fraction(name: str) -> float:
    """A number in [0, 1) fixed by ``name`` (md5), the same on every machine and Python."""
    return int.from_bytes(hashlib.md5(name.encode("utf-8")).digest()[:8], "big") / 2**64


def hash_split(names: Sequence[str], test_fraction: float) -> set[str]:
    """The test share of ``names``: the ``round(test_fraction * n)`` names (at least one when
    ``n > 1`` and ``test_fraction > 0``, never all) with the smallest :func:`stable_fraction`."""
    n = len(names)
    k = int(round(test_fraction * n))
    if test_fraction > 0 and n > 1:
        k = min(max(k, 1), n - 1)
    return set(sorted(names, key=lambda s: (stable_fraction(s), s))[:k])


def cache_file(cache_dir: Optional[str], root: Path) -> Path:
    base = Path(cache_dir).expanduser() if cache_dir else Path.home() / ".cache" / "rsvp"
    digest = hashlib.md5(str(root.resolve()).encode()).hexdigest()[:16]
    return base / f"video_index_{digest}.json"


def _load_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        if data.get("version") == CACHE_VERSION:
            return data["entries"]
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    return {}


def _save_cache(path: Path, entries: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        merged = {**_load_cache(path), **entries}  # another split may have added its own
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": CACHE_VERSION, "entries": merged}))
        tmp.replace(path)
    except OSError as err:
        logger.info("could not write the video index cache %s: %s", path, err)


def _probe(path: Path) -> dict:
    try:
        if path.is_dir():
            return _inspect_frame_folder(path)
        num_frames, first_pts = probe_video(path)
        return {"frames": num_frames, "first_pts": first_pts}
    except Exception as err:  # noqa: BLE001 - any failure means: skip this file
        return {"error": f"unreadable ({type(err).__name__}: {err})".replace("\n", " ")[:300]}


def _inspect_frame_folder(folder: Path) -> dict:
    """The frame count of a frame folder, or why it cannot be read: an image file that is not an
    image, or frames of different sizes (each would fail every clip read later)."""
    sizes: dict[tuple[int, int], str] = {}
    files = list_frame_files(folder)
    for path in files:
        try:
            with Image.open(path) as img:  # reads the header only
                size = img.size
        except (OSError, SyntaxError, ValueError):
            return {"error": f"{path.name} is not a readable image"}
        sizes.setdefault(size, path.name)
        if len(sizes) > 1:
            (a, first), (b, other) = list(sizes.items())[:2]
            return {"error": f"frames of different sizes ({a[0]}x{a[1]} in {first}, {b[0]}x{b[1]} in {other})"}
    return {"frames": len(files)}


def index_videos(paths: Sequence[Path], *, min_frames: int, cache_dir: Optional[str], root: Path,
                 desc: str = "Indexing videos") -> tuple[list[VideoEntry], list[tuple[str, str]]]:
    """``(usable entries, [(path, reason) skipped])`` for ``paths``, in the given order."""
    cache_path = cache_file(cache_dir, root)
    cached = _load_cache(cache_path)
    results: dict[Path, dict] = {}
    to_probe: list[tuple[Path, str, os.stat_result]] = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError as err:
            results[path] = {"error": f"unreadable ({err})"}
            continue
        key = os.path.abspath(path)
        hit = cached.get(key)
        if hit and hit.get("size") == stat.st_size and hit.get("mtime_ns") == stat.st_mtime_ns:
            results[path] = hit
        else:
            to_probe.append((path, key, stat))
    if to_probe:
        fresh = {}
        workers = min(32, 4 * (os.cpu_count() or 1), len(to_probe))
        with ThreadPoolExecutor(max_workers=workers) as pool, \
                tqdm(total=len(to_probe), desc=desc, unit="video", disable=len(to_probe) <= PROGRESS_MIN_FILES) as bar:
            for (path, key, stat), info in zip(to_probe, pool.map(_probe, [p for p, _, _ in to_probe])):
                info = {**info, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
                results[path] = fresh[key] = info
                bar.update()
        _save_cache(cache_path, fresh)
    entries, skipped = [], []
    for path in paths:
        info = results[path]
        if "error" in info:
            skipped.append((str(path), info["error"]))
        elif info["frames"] < min_frames:
            skipped.append((str(path), f"too short ({info['frames']} frames, a clip needs {min_frames})"))
        else:
            entries.append(VideoEntry(str(path), int(info["frames"]), info.get("first_pts")))
    return entries, skipped


def warn_skipped(label: str, skipped: Sequence[tuple[str, str]], num_found: int,
                 notes: Iterable[str] = ()) -> None:
    """One warning naming every skipped video (truncated when there are very many)."""
    notes = [n for n in notes if n]
    if not skipped and not notes:
        return
    lines = []
    if skipped:
        lines.append(f"{label}: skipped {len(skipped)} of {num_found} videos:")
        lines += [f"  {path}: {reason}" for path, reason in skipped[:MAX_NAMES_IN_WARNING]]
        if len(skipped) > MAX_NAMES_IN_WARNING:
            lines.append(f"  ... and {len(skipped) - MAX_NAMES_IN_WARNING} more (see dataset.skipped)")
    lines += [f"{label}: {note}" for note in notes]
    warnings.warn("\n".join(lines), DataWarning, stacklevel=3)
