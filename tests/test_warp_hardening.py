"""scripts/warp_hardening.py: one-hot warp weights and the table of a warp first stage."""
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
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


def test_table_of_a_warp_first_stage_and_an_error_for_a_gate_one(first_stage_run, tmp_path, capsys):
    assert main.main(["--exp", "first_stage", "--config", "configs/first_stage/warp_shapes32.yaml", "--id", "w",
                      f"results_dir={tmp_path}", *TINY, "train.max_steps=2", "model.vqvae.warp_window=3",
                      "model.vqvae.warp_keys=object"]) == 0  # content keys: the wrapped weights get the content
    doc = tmp_path / "doc.md"
    doc.write_text("a\n<!-- hard-keys:start -->\n<!-- hard-keys:end -->\nb\n")
    model = str(tmp_path / "first_stage_w_shapes_42" / "model_last.pth")
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
