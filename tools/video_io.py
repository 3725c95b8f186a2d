"""Reading and writing whole videos, and converting between tensors and uint8 frames.

Conventions: a video tensor is float ``[C, T, H, W]`` (or ``[B, C, T, H, W]``) in ``[-1, 1]``;
frames on disk and in numpy are uint8 ``[T, H, W, C]``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import av
import numpy as np
import torch
from einops import rearrange
from PIL import Image

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".webm", ".gif", ".mov", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """``[C, T, H, W]`` float in [-1, 1] -> uint8 ``[T, H, W, C]`` (rounded, clamped)."""
    if video.dim() != 4:
        raise ValueError(f"expected a [C, T, H, W] video, got shape {tuple(video.shape)}")
    frames = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return rearrange(frames, "c t h w -> t h w c").cpu().numpy()


def from_uint8(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``[T, H, W, C]`` -> float ``[C, T, H, W]`` in [-1, 1]."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).float() / 127.5 - 1.0
    return rearrange(video, "t h w c -> c t h w")


def natural_key(name: str) -> list:
    """Sort key that orders ``frame2`` before ``frame10``."""
    import re

    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_frame_files(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, in natural order."""
    files = [p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    return sorted(files, key=lambda p: natural_key(p.name))


def read_image_rgb(path: str | Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def read_video(path: str | Path) -> np.ndarray:
    """Decode a whole video to uint8 ``[T, H, W, 3]``.

    Accepts video files (decoded with PyAV), ``.npy`` arrays of uint8 ``[T, H, W, C]``
    (a single channel is repeated to RGB) and folders of frame images.
    """
    path = Path(path)
    if path.is_dir():
        files = list_frame_files(path)
        if not files:
            raise ValueError(f"no image frames in folder {path}")
        return np.stack([read_image_rgb(f) for f in files])
    if path.suffix.lower() == ".npy":
        try:
            frames = np.load(path)
        except (ValueError, OSError, EOFError):  # numpy's words for a damaged file speak of pickles
            raise ValueError(f"{path}: not a readable .npy array (damaged, truncated or another format)") from None
        if frames.ndim == 3:
            frames = frames[..., None]
        if frames.ndim != 4 or frames.dtype != np.uint8:
            raise ValueError(f"{path}: expected uint8 [T, H, W, C], got {frames.dtype} {frames.shape}")
        if frames.shape[-1] == 1:
            frames = np.repeat(frames, 3, axis=-1)
        return frames
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    if not frames:
        raise ValueError(f"{path}: no decodable video frames")
    return np.stack(frames)


def write_video(path: str | Path, frames: np.ndarray | Sequence[np.ndarray], fps: float = 8.0) -> Path:
    """Write uint8 ``[T, H, W, 3]`` frames as ``.gif``, ``.mp4``/``.avi``/... or ``.npy`` by suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4:
        raise ValueError(f"expected uint8 [T, H, W, C] frames, got {frames.dtype} {frames.shape}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(path, frames)
    elif suffix == ".gif":
        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0,
                       optimize=True)
    elif suffix == ".png":
        Image.fromarray(frames[0]).save(path)
    else:
        _write_encoded(path, frames, fps)
    return path


def _write_encoded(path: Path, frames: np.ndarray, fps: float, codec: str | None = None,
                   gop_size: int | None = None, bit_rate: int | None = None) -> None:
    from fractions import Fraction

    codec = codec or ("mpeg4" if path.suffix.lower() == ".avi" else "libx264")
    height, width = frames.shape[1:3]
    # yuv420p needs even sides; pad by edge replication rather than fail.
    pad_h, pad_w = height % 2, width % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "veryfast"}
        if gop_size is not None:
            stream.gop_size = gop_size
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def video_grid(videos: torch.Tensor, ncol: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile ``[B, C, T, H, W]`` videos in [-1, 1] into one uint8 video ``[T, H', W', C]``."""
    b = videos.shape[0]
    ncol = ncol or int(np.ceil(np.sqrt(b)))
    nrow = int(np.ceil(b / ncol))
    frames = np.stack([to_uint8(v) for v in videos])  # [B, T, H, W, C]
    if nrow * ncol > b:
        blank = np.zeros((nrow * ncol - b,) + frames.shape[1:], dtype=np.uint8)
        frames = np.concatenate([frames, blank])
    frames = np.pad(frames, ((0, 0), (0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=255)
    return rearrange(frames, "(r c) t h w ch -> t (r h) (c w) ch", r=nrow, c=ncol)


def frame_strip(videos: torch.Tensor, max_frames: int = 8, pad: int = 2) -> np.ndarray:
    """One still image: a row per video, up to ``max_frames`` evenly spaced frames as columns."""
    t = videos.shape[2]
    idx = np.linspace(0, t - 1, num=min(max_frames, t)).round().astype(int)
    frames = np.stack([to_uint8(v)[idx] for v in videos])  # [B, K, H, W, C]
    frames = np.pad(frames, ((0, 0), (0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=255)
    return rearrange(frames, "b k h w c -> (b h) (k w) c")


def encode_video(path: str | Path, frames: np.ndarray, fps: float = 25.0, *, codec: str | None = None,
                 gop_size: int | None = None, bit_rate: int | None = None) -> Path:
    """Encode uint8 ``[T, H, W, 3]`` frames with control over codec, keyframe interval and bit rate.

    Defaults as :func:`write_video` (mpeg4 for ``.avi``, libx264 otherwise). Used to make test and
    benchmark videos with a known GOP.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_encoded(path, np.asarray(frames), fps, codec=codec, gop_size=gop_size, bit_rate=bit_rate)
    return path


# --- Partial decoding: only the frames a clip needs -------------------------------------------

# How the clip reader got its frames: "seek" (keyframe seek, then decode forward), "forward"
# (decode from the first frame), "seek_fallback" (a seek was unusable: irregular timestamps,
# landed past the start, ...; fell back to forward), and "frames_decoded" (all frames decoded).
DECODE_STATS: dict[str, int] = {"seek": 0, "forward": 0, "seek_fallback": 0, "frames_decoded": 0}
# Frames before the start to seek to when the first seek lands after it (open GOPs).
SEEK_MARGINS = (0, 4, 16)


class VideoTooShortError(ValueError):
    """The video ended before the requested frames; ``num_frames`` is how many it really has."""

    def __init__(self, path: str | Path, num_frames: int, needed: int) -> None:
        super().__init__(f"{path}: has {num_frames} frames, needed {needed}")
        self.num_frames = num_frames
        self.needed = needed


def probe_video(path: str | Path) -> tuple[int, int | None]:
    """``(num_frames, first_pts)`` of a video file, cheaply.

    The frame count comes from the container metadata (``stream.frames``), else from
    duration x frame rate, else by decoding and counting (GIFs without metadata). The first frame
    is always decoded: that checks the file is decodable and gives its timestamp, which
    :func:`read_video_frames` uses to map timestamps to frame numbers. Raises on unreadable files.
    """
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        decoded = container.decode(stream)
        first = next(decoded, None)
        if first is None:
            raise ValueError("no decodable video frames")
        count = stream.frames or 0
        if count <= 0:
            rate = stream.guessed_rate or stream.average_rate
            if stream.duration and stream.time_base:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration:
                seconds = container.duration / av.time_base
            else:
                seconds = 0.0
            count = int(round(seconds * float(rate))) if rate and seconds > 0 else 0
        if count <= 0:
            count = 1 + sum(1 for _ in decoded)
        return count, first.pts


def read_frame_files(folder: str | Path, indices: Sequence[int]) -> np.ndarray:
    """Frames ``indices`` (in natural file order) of a folder of images, reading only those files."""
    files = list_frame_files(folder)
    if not files:
        raise ValueError(f"no image frames in folder {folder}")
    if max(indices) >= len(files):
        raise VideoTooShortError(folder, len(files), max(indices) + 1)
    return np.stack([read_image_rgb(files[i]) for i in indices])


def read_video_frames(path: str | Path, indices: Sequence[int], first_pts: int | None = None) -> np.ndarray:
    """Frames ``indices`` of a video as uint8 ``[len(indices), H, W, 3]``, decoding as little as possible.

    Frame ``i`` is the ``i``-th frame :func:`read_video` returns. For a start past frame 0 the
    reader seeks to the keyframe before the first wanted frame, decodes forward and stops after the
    last wanted one; frames are identified by timestamp (``(pts - first_pts) * fps``). When that is
    not exact (no timestamps, irregular timestamps, a seek that lands past the start, a gap) it
    falls back to decoding from the first frame and counting, so the result always equals the
    corresponding frames of a full decode. ``first_pts`` (from :func:`probe_video`) saves decoding
    the first frame. Folders of images and GIFs are read forward. Raises
    :class:`VideoTooShortError` when the video has fewer frames than asked for.
    """
    path = Path(path)
    indices = [int(i) for i in indices]
    if not indices or min(indices) < 0:
        raise ValueError(f"bad frame indices {indices}")
    if path.is_dir():
        return read_frame_files(path, indices)
    wanted = sorted(set(indices))
    got = None
    if wanted[0] > 0 and path.suffix.lower() != ".gif":
        with av.open(str(path)) as container:
            got = _decode_seeking(container, wanted, first_pts)
        DECODE_STATS["seek" if got is not None else "seek_fallback"] += 1
    if got is None:
        with av.open(str(path)) as container:
            got = _decode_forward(container, wanted, path)
        DECODE_STATS["forward"] += 1
    return np.stack([got[i] for i in indices])


def _rgb_converter():
    """``frame -> uint8 [H, W, 3]``, equal to ``frame.to_ndarray(format="rgb24")`` but ~8x faster
    for a run of frames: one swscale context for all of them instead of one per frame."""
    from av.video.reformatter import VideoReformatter

    reformatter = VideoReformatter()
    return lambda frame: reformatter.reformat(frame, format="rgb24").to_ndarray()


def _decode_forward(container, wanted: list[int], path: Path) -> dict[int, np.ndarray]:
    stream = container.streams.video[0]
    need, last, got, count = set(wanted), wanted[-1], {}, 0
    to_rgb = _rgb_converter()
    for count, frame in enumerate(container.decode(stream), start=1):
        if count - 1 in need:
            got[count - 1] = to_rgb(frame)
        if count - 1 >= last:
            break
    DECODE_STATS["frames_decoded"] += count
    if len(got) < len(need):
        raise VideoTooShortError(path, count, last + 1)
    return got


def _decode_seeking(container, wanted: list[int], first_pts: int | None) -> dict[int, np.ndarray] | None:
    """Seek-and-decode by timestamps; ``None`` whenever the frame numbering is not certain.

    With open GOPs (e.g. B-frames in AVI) the keyframe found for the start's timestamp can come
    after the start in display order; then it seeks again a few frames earlier.
    """
    from fractions import Fraction

    stream = container.streams.video[0]
    rate = stream.guessed_rate or stream.average_rate
    if not rate or not stream.time_base:
        return None
    ticks = 1 / (Fraction(rate) * Fraction(stream.time_base))  # timestamp units per frame
    if first_pts is None:
        first = next(container.decode(stream), None)
        DECODE_STATS["frames_decoded"] += 1
        if first is None or first.pts is None:
            return None
        first_pts = first.pts
    start, last, need = wanted[0], wanted[-1], set(wanted)
    to_rgb = _rgb_converter()
    for margin in SEEK_MARGINS:
        if start - margin <= 0:
            return None
        container.seek(int(first_pts + (start - margin) * ticks), stream=stream, backward=True)
        got: dict[int, np.ndarray] = {}
        decoded, previous = 0, None
        for frame in container.decode(stream):
            decoded += 1
            if frame.pts is None:
                break
            position = (frame.pts - first_pts) / ticks
            index = round(position)
            if abs(position - index) > Fraction(1, 4) or (previous is not None and index <= previous):
                break  # irregular timestamps
            if previous is None and index > start:
                break  # landed after the first wanted frame
            previous = index
            if index in need:
                got[index] = to_rgb(frame)
            if index >= last:
                break
        DECODE_STATS["frames_decoded"] += decoded
        if len(got) == len(need):
            return got
        if previous is not None or decoded == 0:
            return None  # a gap, irregular timestamps or the end of the stream: count instead
    return None

