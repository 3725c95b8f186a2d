"""scripts/warp_hardening.py: one-hot warp weights and the table of a warp first stage."""
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from temperature_transfer import main as transfer  # noqa: E402
from warp_hardening import choose_temperature, main as hardening, one_hot_largest  # noqa: E402

import main  # noqa: E402
from tests.tiny_configs import TINY  # noqa: E402


def test_one_hot_largest_keeps_the_argmax_offset():
    weights = torch.softmax(torch.randn(2, 3, 9, 4, 4, generator=torch.Generator().manual_seed(0)), dim=2)
    hard = one_hot_largest(weights)
    assert torch.equal(hard.sum(dim=2), torch.ones(2, 3, 4, 4))
    assert torch.equal(hard.argmax(dim=2), weights.argmax(dim=2))


def test_the_chosen_temperature_is_the_highest_that_reaches_the_ratio():
    rows = [{"setting": "trained", "temperature": 1.0, "psnr": 29.0, "tv_ratio": 0.62},
            {"setting": "coarse one-hot", "temperature": None, "psnr": 27.6, "tv_ratio": 0.95},  # not a temperature
            {"setting": "T 0.6", "temperature": 0.6, "psnr": 28.3, "tv_ratio": 0.79},
            {"setting": "T 0.5", "temperature": 0.5, "psnr": 28.0, "tv_ratio": 0.82},
            {"setting": "T 0.4", "temperature": 0.4, "psnr": 27.6, "tv_ratio": 0.88}]
    choice = choose_temperature(rows, 0.8)
    assert (choice["temperature"], choice["psnr"], choice["reached"]) == (0.5, 28.0, True)
    assert choose_temperature(rows, 0.6)["temperature"] == 1.0  # the trained weights already reach it
    missed = choose_temperature(rows, 0.9)  # none reaches it: the highest ratio, and it says so
    assert (missed["temperature"], missed["reached"]) == (0.4, False)


@pytest.fixture(scope="module")
def warp_model(tmp_path_factory) -> str:
    """A two-step warp first stage with content keys (the wrapped weights get the content)."""
    root = tmp_path_factory.mktemp("warp")
    assert main.main(["--exp", "first_stage", "--config", "configs/first_stage/warp_shapes32.yaml", "--id", "w",
                      f"results_dir={root}", *TINY, "train.max_steps=2", "model.vqvae.warp_window=3",
                      "model.vqvae.warp_keys=object"]) == 0
    return str(root / "first_stage_w_shapes_42" / "model_last.pth")


def test_table_of_a_warp_first_stage_and_an_error_for_a_gate_one(warp_model, first_stage_run, tmp_path, capsys):
    doc = tmp_path / "doc.md"
    doc.write_text("a\n<!-- hard-keys:start -->\n<!-- hard-keys:end -->\nb\n")
    model = warp_model
    with pytest.raises(SystemExit) as exit_info:  # the default block is not in this doc: refused before measuring
        hardening(["--first_model", model, "--num_clips", "2", "--doc", str(doc)])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:  # a temperature must be positive
        hardening(["--first_model", model, "--num_clips", "2", "--temperatures", "0.5,-1"])
    assert exit_info.value.code == 2
    assert hardening(["--first_model", model, "--num_clips", "2", "--doc", str(doc), "--block", "hard-keys",
                      "--temperatures", "0.5"]) == 0
    text = doc.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "PSNR" not in line]
    assert [r.split(" | ")[0] for r in rows] == ["| trained (soft mixtures)", "| coarse warp one-hot",
                                                  "| fine 3x3 warp one-hot", "| both warps one-hot",
                                                  "| both warps at temperature 0.5"]
    assert "mean largest weight" in text and text.startswith("a\n") and text.endswith("b\n")
    # the trained soft weights and the one-hot ones decode differently
    assert len({r.split(" | ")[1] + r.split(" | ")[2] for r in rows}) > 1
    capsys.readouterr()
    assert hardening(["--first_model", model, "--num_clips", "2", "--first_clip", "2"]) == 0  # other clips
    out = capsys.readouterr().out
    assert "--num_clips 2 --first_clip 2`" in out
    assert out.split("| trained (soft mixtures) | ")[1].split(" |")[0] != rows[0].split(" | ")[1]
    choice_file = tmp_path / "choice.json"
    assert hardening(["--first_model", model, "--num_clips", "2", "--first_clip", "2", "--temperatures", "0.5,0.1",
                      "--choose_ratio", "0", "--choice_out", str(choice_file)]) == 0
    choice = json.loads(choice_file.read_text())
    assert choice["temperature"] == 1.0 and choice["reached"] and choice["first_clip"] == 2  # every ratio is >= 0
    assert "Chosen on test clips 2-3: temperature 1 " in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:  # a choice needs somewhere to go
        hardening(["--first_model", model, "--num_clips", "2", "--choose_ratio", "0.8"])
    assert exit_info.value.code == 2
    assert hardening(["--first_model", model, "--num_clips", "2", "--first_clip", "100000"]) == 2
    assert "outside the test split" in capsys.readouterr().err
    assert hardening(["--first_model", str(first_stage_run / "model_last.pth"), "--num_clips", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "no warp" in err[0]


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_temperature_transfer_scores_each_set_of_clips_and_their_mean(warp_model, tmp_path, capsys):
    doc = tmp_path / "doc.md"
    doc.write_text("a\n<!-- temperature-transfer:start -->\n<!-- temperature-transfer:end -->\nb\n")
    assert transfer(["--first_model", warp_model, "--temperatures", "0.3", "--set_size", "2", "--num_sets", "2",
                     "--doc", str(doc)]) == 0
    table = [cells(line) for line in doc.read_text().splitlines() if line.startswith("| ")]
    assert table[0] == ["decoding", "clips 0-1", "clips 2-3", "lowest PSNR", "lowest ratio", "all 4 clips"]
    assert [row[0] for row in table[1:]] == ["trained (soft mixtures)", "temperature 0.3"]
    for row in table[1:]:
        sets = [tuple(map(float, c.split(" / "))) for c in row[1:3]]
        assert float(row[3]) == min(p for p, _ in sets) and float(row[4]) == min(r for _, r in sets)
        mean = tuple(map(float, row[5].split(" / ")))
        assert mean == pytest.approx((sum(p for p, _ in sets) / 2, sum(r for _, r in sets) / 2), abs=0.01)
    # the sets are different clips, so they score differently; the temperature changes the decoding
    assert table[1][1] != table[1][2] and table[1][1:3] != table[2][1:3]
    # the same clips as warp_hardening, the same numbers
    capsys.readouterr()
    assert hardening(["--first_model", warp_model, "--num_clips", "2", "--first_clip", "2", "--temperatures", "0.3"]) == 0
    out = capsys.readouterr().out
    assert out.split("| both warps at temperature 0.3 | ")[1].split(" |")[0] == table[2][2].split(" / ")[0]
    # the second set as trained too: measuring the first set's temperatures must not leak into it
    assert out.split("| trained (soft mixtures) | ")[1].split(" |")[0] == table[1][2].split(" / ")[0]
    # more clips than the split holds (TINY: 4): one line, exit 2, nothing measured into the doc
    before = doc.read_text()
    assert transfer(["--first_model", warp_model, "--temperatures", "0.3", "--set_size", "2", "--num_sets", "3",
                     "--doc", str(doc)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "needs 6 test clips; the split has 4" in err[0]
    assert doc.read_text() == before
