"""ST-LPIPS from the weights in the stlpips-pytorch wheel: offline, strict, our own network code."""
import json
import sys
import types

import numpy as np
import pytest
import torch

from evaluation.evaluate import main as evaluate_main
from evaluation.lpips_metric import lpips_per_frame
from evaluation.protocol import PredictionEvaluator, evaluate_predictions, parse_metrics
from evaluation.st_lpips import MIN_SIZE, STLPIPS, build_st_lpips, weights_path
from evaluation.weights import MissingWeightsError
from losses.perceptual import PerceptualConfig, PerceptualLoss, build_perceptual_loss
from tools.config import ConfigError
from tools.video_io import write_video

FOREIGN = ("stlpips_pytorch", "IPython", "torchsummary")


def _foreign_modules() -> set[str]:
    return {m for m in sys.modules if m.split(".")[0] in FOREIGN}


# no_network (torch.hub / model_zoo / torchvision downloads, urllib.request.urlopen and
# socket.socket.connect all raise) and empty_torch_home (no LPIPS trunk files): tests/conftest.py


@pytest.fixture(scope="module")
def alex():
    return build_st_lpips("alex")


def _images(n=2, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def test_weights_load_offline_with_strict_keys(no_network, tmp_path):
    before = _foreign_modules()
    for net in ("alex", "vgg"):
        path = weights_path(net)
        assert path.name == f"{net}_shift_tolerant.pth" and "stlpips_pytorch" in path.parts
        state = torch.load(path, map_location="cpu", weights_only=True)
        fresh = STLPIPS(net)
        assert set(fresh.state_dict()) == set(state)   # the same layout, key for key
        model = build_st_lpips(net)                      # loads with strict=True
        for key, value in model.state_dict().items():
            assert torch.equal(value, state[key]), key
        assert not model.training and not any(p.requires_grad for p in model.parameters())
        assert model.train().training is False           # a fixed metric stays in eval mode
    assert _foreign_modules() == before                  # the stlpips package itself is never imported
    # a file that is not the 0.0.2 one: the hash check names it; without it, strict loading does
    del state["lin4.model.1.weight"]
    torch.save(state, tmp_path / "vgg.pth")
    with pytest.raises(ValueError, match="SHA-256 differs"):
        build_st_lpips("vgg", path=tmp_path / "vgg.pth")
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*lin4\.model\.1\.weight"):
        build_st_lpips("vgg", path=tmp_path / "vgg.pth", check_hash=False)


def test_no_download_is_attempted(no_network, empty_torch_home):
    before = _foreign_modules()
    for net in ("alex", "vgg"):
        assert isinstance(build_st_lpips(net), STLPIPS)
    with pytest.warns(UserWarning, match="using ST-LPIPS"):
        loss = build_perceptual_loss(PerceptualConfig(net="vgg", backend="auto"))
    assert loss.name == "st_lpips"
    evaluator = PredictionEvaluator("psnr,st_lpips", device="cpu")
    assert evaluator.active == ["psnr", "st_lpips"] and not evaluator.skipped
    assert _foreign_modules() == before


def test_identical_is_zero_different_is_positive(alex):
    x, y = _images(seed=0), _images(seed=1)
    with torch.no_grad():
        same, diff = alex(x, x).flatten(), alex(x, y).flatten()
        shifted = alex(x, torch.roll(x, 1, dims=-1)).flatten()
    assert same.shape == (2,) and same.abs().max() < 1e-6
    assert (diff > 0.01).all() and (shifted < diff).all()
    # per frame, as the metric scores videos; one channel is repeated to RGB
    clips = torch.stack([x, y], dim=2)[:, :1]                         # [2, 1, 2, H, W]
    scores = lpips_per_frame(alex, clips, clips.flip(2))
    assert scores.shape == (2, 2) and (scores > 0).all()
    with pytest.raises(ValueError, match=f"at least {MIN_SIZE['alex']}"):
        alex(x[..., :16, :16], y[..., :16, :16])


def test_gradients_are_finite(alex):
    """A loss needs input gradients, also where a feature vector is all zeros (0/0 in a plain norm)."""
    x = torch.full((1, 3, 32, 32), -1.0).requires_grad_(True)
    alex(x, _images(1, 32)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    feats = torch.zeros(1, 4, 2, 2).requires_grad_(True)
    STLPIPS.unit_length(feats).sum().backward()
    assert torch.isfinite(feats.grad).all()


@pytest.fixture
def reference_package(monkeypatch):
    """The original stlpips_pytorch.stlpips, importable without IPython / torchsummary: both are used
    only by debugging helpers (``embed``, ``summary``), so stubs stand in when they are missing."""
    before = _foreign_modules()
    for name, attr in (("IPython", "embed"), ("torchsummary", "summary")):
        try:
            __import__(name)
        except ImportError:
            monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**{attr: None}))
    try:
        from stlpips_pytorch import stlpips
    except Exception as err:  # noqa: BLE001 -- any import failure: the comparison cannot run here
        pytest.skip(f"the stlpips_pytorch package cannot be imported here: {err}")
    yield stlpips
    for name in _foreign_modules() - before:   # leave no trace for the import checks
        sys.modules.pop(name, None)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_matches_the_original_package(reference_package, net):
    reference = reference_package.LPIPS(net=net, variant="shift_tolerant", verbose=False).eval()
    ours = build_st_lpips(net)
    x, y = _images(2, 48, seed=2), _images(2, 48, seed=3)
    with torch.no_grad():
        expected, got = reference(x, y).flatten(), ours(x, y).flatten()
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-7), (got, expected)


def test_perceptual_loss_backends(no_network, empty_torch_home, monkeypatch):
    with pytest.warns(UserWarning, match=r"using ST-LPIPS \(alex\), not LPIPS.*alexnet-owt-7be5be79\.pth"):
        loss = build_perceptual_loss(PerceptualConfig(net="alex", backend="auto", frames=2, required=True))
    assert isinstance(loss, PerceptualLoss) and loss.name == "st_lpips" and loss.label == "ST-LPIPS (alex)"
    clip = torch.rand(1, 3, 4, 32, 32) * 2 - 1
    assert loss(clip, clip).item() < 1e-6
    pred = clip.flip(2).requires_grad_(True)
    value = loss(pred, clip)
    value.backward()
    assert value.item() > 0 and torch.isfinite(pred.grad).all()

    explicit = build_perceptual_loss(PerceptualConfig(net="alex", backend="st_lpips"))
    assert explicit.name == "st_lpips"
    # backend lpips keeps the LPIPS-only behaviour: required -> start-up error, else off (loudly)
    with pytest.raises(ConfigError, match=r"alexnet-owt-7be5be79\.pth.*model\.perceptual\.weight=0"):
        build_perceptual_loss(PerceptualConfig(net="alex", backend="lpips", required=True))
    with pytest.warns(UserWarning, match="PERCEPTUAL LOSS IS OFF"):
        assert build_perceptual_loss(PerceptualConfig(net="alex")) is None   # backend lpips: the default
    with pytest.raises(ConfigError, match="backend must be one of auto, lpips, st_lpips"):
        PerceptualConfig(backend="vgg")
    # neither LPIPS nor the stlpips-pytorch wheel: required is an error naming both
    import evaluation.st_lpips as st

    monkeypatch.setattr(st, "find_spec", lambda name: None)
    with pytest.raises(MissingWeightsError, match="pip install stlpips-pytorch==0.0.2"):
        st.weights_path("alex")
    with pytest.raises(ConfigError, match=r"alexnet-owt-7be5be79\.pth.*stlpips-pytorch"):
        build_perceptual_loss(PerceptualConfig(net="alex", backend="auto", required=True))


def test_metric_is_named_st_lpips_never_lpips(alex, tmp_path, capsys):
    assert "st_lpips" not in parse_metrics(None)          # asked for by name only
    g = torch.Generator().manual_seed(0)
    real = torch.rand(3, 3, 5, 32, 32, generator=g) * 2 - 1
    samples = (real.unsqueeze(1) + torch.tensor([0.05, 0.5]).view(1, 2, 1, 1, 1, 1)
               * torch.randn(3, 2, 3, 5, 32, 32, generator=g)).clamp(-1, 1)
    out = evaluate_predictions(real, samples, cond_frames=2, metrics="psnr,st_lpips", st_lpips_model=alex,
                               device="cpu")
    assert set(out["summary"]) == {"psnr", "psnr_best_of_n", "st_lpips", "st_lpips_best_of_n"}
    entry = out["frame_metrics"]["st_lpips"]
    assert entry["higher_is_better"] is False
    assert out["summary"]["st_lpips_best_of_n"] < out["summary"]["st_lpips"]   # best = min
    assert "not comparable with LPIPS" in out["protocol"]["frame_metrics"]["st_lpips"]["label"]
    assert len(out["curves"]["st_lpips"]["mean"]) == 3

    # the CLI, on .npy videos
    rng = np.random.default_rng(0)
    for i in range(2):
        video = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
        write_video(tmp_path / "real" / f"v{i}.npy", video)
        write_video(tmp_path / "fake" / f"v{i}.npy", np.roll(video, 3, axis=2))
    result_path = tmp_path / "m.json"
    assert evaluate_main(["--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"), "--metrics",
                          "st_lpips", "--out", str(result_path), "--device", "cpu"]) == 0
    result = json.loads(result_path.read_text())
    assert set(result["summary"]) == {"st_lpips", "st_lpips_best_of_n"} and result["summary"]["st_lpips"] > 0
    assert "st_lpips" in capsys.readouterr().out
