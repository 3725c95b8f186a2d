"""python -m tools.inspect_data: counts, format, throughput, GIF + PNG; exit 2 on bad config."""
from PIL import Image

from tools.inspect_data import main


def test_shapes_end_to_end(tmp_path, capsys):
    out = tmp_path / "insp" / "shapes.gif"
    code = main(["--data", "shapes", "--num_clips", "6", "--out", str(out), "data.num_workers=0",
                 "data.resolution=32", "data.frames=4"])
    assert code == 0
    text = capsys.readouterr().out
    assert "videos found: 10000" in text and "[3, 4, 32, 32]" in text and "clips/s" in text
    assert "torch.float32" in text and "range: [-" in text
    assert out.is_file() and out.with_suffix(".png").is_file()
    with Image.open(out) as gif:
        assert gif.n_frames == 4


def test_videofolder_reports_skipped(tmp_path, videos, capsys):
    root = tmp_path / "data"
    for i in range(3):
        videos.file(root / "train" / f"v{i}.mp4", num_frames=10, seed=i)
    videos.file(root / "test" / "w.mp4", num_frames=10)
    videos.corrupt(root / "train" / "bad.avi")
    code = main(["--data", "videofolder", "--data_path", str(root), "--num_clips", "5", "--batch_size", "2",
                 "--out", str(tmp_path / "o.gif"), "data.num_workers=0", "data.frames=4", "data.resolution=16",
                 f"data.cache_dir={tmp_path / 'cache'}"])
    assert code == 0
    text = capsys.readouterr().out
    assert "videos found: 4, usable: 3, skipped: 1" in text and "bad.avi: unreadable" in text
    assert (tmp_path / "o.gif").is_file() and (tmp_path / "o.png").is_file()


def test_bad_key_and_bad_data_exit_2(tmp_path, capsys):
    assert main(["data.no_such_key=1"]) == 2
    assert "no_such_key" in capsys.readouterr().err
    assert main(["--data", "ucf101"]) == 2
    assert "--data_path" in capsys.readouterr().err
    assert main(["--data", "nope"]) == 2
    assert "available" in capsys.readouterr().err
