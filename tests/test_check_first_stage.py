"""scripts/check_first_stage.sh: one warp first stage trained, scored, its warp temperature chosen on
other clips, and that choice measured on every set of test clips (scripts/lib_first_stage.sh)."""
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.tiny_configs import TINY

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "check_first_stage.sh"
# 8 test clips: 2 scored, 2 more to choose the temperature on, 4 sets of 2 for the transfer table
OVERRIDES = [o for o in TINY if not o.startswith("data.shapes.num_test=")] + [
    "data.shapes.num_test=8", "model.vqvae.warp_window=3"]


def run_check(out: Path, *args: str, **settings: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VIRTUAL_ENV": sys.prefix, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "OUT": str(out), "NUM_VIDEOS": "2", "TEMPERATURES": "0.5,0.25,0.1", "DEVICE": "cpu", **settings}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


def test_a_first_stage_is_trained_scored_and_its_temperature_chosen_on_other_clips(tmp_path):
    out, doc = tmp_path / "out", tmp_path / "doc.md"
    blocks = ("curves", "sweep", "reports", "transfer")
    doc.write_text("prose\n" + "".join(f"<!-- x-{b}:start -->\n<!-- x-{b}:end -->\n" for b in blocks) + "end\n")
    args = ("configs/first_stage/warp_shapes32.yaml", "t", "2", *OVERRIDES)
    done = run_check(out, *args, DOC=str(doc), BLOCKS="x")
    assert done.returncode == 0, done.stderr[-2000:]
    run = out / "first_stage_t_shapes_42"
    assert (run / "model_last.pth").is_file()
    report = json.loads((out / "t_report.json").read_text())
    assert report["num_clips"] == 2
    sweep = json.loads((out / "t_report_sweep.json").read_text())
    assert sweep["first_clip"] == 2  # chosen on the clips after the scored ones
    chosen = format(sweep["temperature"], "g")
    table = (out / "t_table.md").read_text()
    label = "warp_shapes32 (" + " ".join(OVERRIDES).replace("=", ": ") + "), 2 steps"
    assert f"| {label} |" in table
    if chosen != "1":  # the trained weights may already reach the ratio: then there is no second checklist
        assert json.loads((out / "t_report_t.json").read_text())["warp_temperature"] == sweep["temperature"]
        assert f"decoded at warp temperature {chosen}, chosen on test clips 2-3" in table
    transfer = (out / "t_transfer.txt").read_text()
    assert "clips 6-7" in transfer and "all 8 clips" in transfer
    text = doc.read_text()  # every block filled from the files above, the prose kept
    assert text.startswith("prose\n") and text.endswith("end\n")
    for block, content in (("sweep", (out / "t_report_sweep.txt").read_text()), ("reports", table),
                           ("transfer", transfer)):
        assert f"<!-- x-{block}:start -->\n{content.strip()}\n<!-- x-{block}:end -->" in text
    assert "| 2 |" in text.split("<!-- x-curves:start -->")[1].split("<!-- x-curves:end -->")[0]  # step 2
    # a re-run trains nothing and recomputes nothing
    again = run_check(out, *args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("reusing ") == 3 + (chosen != "1")
    assert "nothing to do" in again.stdout + again.stderr  # the finished run is not trained again


def test_bad_arguments_exit_2_with_one_line_and_make_nothing(tmp_path):
    out = tmp_path / "out"
    for args, message in ((("configs/first_stage/warp_shapes32.yaml", "t"), "usage:"),
                          (("configs/first_stage/warp_shapes32.yaml", "t", "ten"), "usage:"),
                          (("configs/first_stage/nope.yaml", "t", "5"), "config file not found"),
                          (("configs/first_stage/warp_shapes32.yaml", "a/b", "5"), "ID must be")):
        done = run_check(out, *args)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
        assert not out.exists()
    doc = tmp_path / "doc.md"
    doc.write_text("no blocks here\n")
    done = run_check(out, "configs/first_stage/warp_shapes32.yaml", "t", "2", *OVERRIDES, DOC=str(doc))
    assert done.returncode == 2 and "no <!-- t-curves:start -->" in done.stderr  # before any training
    assert not out.exists() and doc.read_text() == "no blocks here\n"
