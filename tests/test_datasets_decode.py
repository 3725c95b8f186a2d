"""Partial decoding: seek-decoded frames equal the same frames of a full decode."""
import numpy as np
import pytest

from tools import video_io
from tools.video_io import VideoTooShortError, probe_video, read_video, read_video_frames


@pytest.mark.parametrize("suffix,gop", [(".mp4", 5), (".avi", 5), (".mkv", 7), (".webm", 6), (".avi", 250)])
def test_seek_decode_equals_full_decode(tmp_path, videos, suffix, gop):
    path = videos.file(tmp_path / f"clip{suffix}", num_frames=40, gop_size=gop)
    full = read_video(path)
    assert len(full) == 40
    num_frames, first_pts = probe_video(path)
    assert num_frames == 40
    before = dict(video_io.DECODE_STATS)
    for start in (0, 1, 4, 5, 6, 11, 17, 23):
        for stride in (1, 2, 3):
            idx = list(range(start, min(start + 6 * stride, 40), stride))
            for hint in (first_pts, None):
                got = read_video_frames(path, idx, first_pts=hint)
                assert np.array_equal(got, full[idx]), (suffix, start, stride)
    seeks = video_io.DECODE_STATS["seek"] - before["seek"]
    fallbacks = video_io.DECODE_STATS["seek_fallback"] - before["seek_fallback"]
    assert seeks > 0 and fallbacks == 0  # the fast path was really taken


def test_seek_decode_with_b_frames_in_avi(tmp_path):
    """mpeg4 B-frames in AVI: open GOPs, display order differs from decode order."""
    import av

    frames = np.stack([np.full((32, 32, 3), 6 * t, np.uint8) for t in range(40)])
    frames[:, 8:16, :, 1] = np.arange(40)[:, None, None] * 5
    path = tmp_path / "bframes.avi"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        stream.gop_size = 6
        stream.codec_context.max_b_frames = 2
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    full = read_video(path)
    for start in range(0, 30, 3):
        idx = list(range(start, start + 8))
        assert np.array_equal(read_video_frames(path, idx), full[idx]), start


def test_decodes_only_what_it_needs(tmp_path, videos):
    path = videos.file(tmp_path / "long.mp4", num_frames=120, gop_size=10)
    before = video_io.DECODE_STATS["frames_decoded"]
    read_video_frames(path, list(range(100, 108)), first_pts=probe_video(path)[1])
    assert video_io.DECODE_STATS["frames_decoded"] - before <= 20  # not 120


def test_gif_and_frame_folder(tmp_path, videos):
    gif = videos.file(tmp_path / "a.gif", num_frames=12)
    full = read_video(gif)
    assert np.array_equal(read_video_frames(gif, [3, 5, 7]), full[[3, 5, 7]])
    folder = videos.frames(tmp_path / "frames", num_frames=12)
    full = read_video(folder)
    assert np.array_equal(read_video_frames(folder, [2, 10, 11]), full[[2, 10, 11]])


def test_too_short_is_reported_with_real_length(tmp_path, videos):
    path = videos.file(tmp_path / "short.mp4", num_frames=10)
    with pytest.raises(VideoTooShortError) as err:
        read_video_frames(path, [8, 9, 10, 11])
    assert err.value.num_frames == 10
    with pytest.raises(VideoTooShortError):
        read_video_frames(videos.frames(tmp_path / "f", num_frames=3), [1, 3])
