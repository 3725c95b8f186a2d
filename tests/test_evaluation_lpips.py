"""LPIPS loading: local files only, clear errors, a labelled random stand-in for tests."""
import pytest
import torch
import torchvision

from evaluation.lpips_metric import (
    STANDIN_LABEL,
    backbone_filename,
    build_lpips,
    default_backbone_path,
    lpips_per_frame,
)
from evaluation.weights import MissingWeightsError


# no_network and empty_torch_home: tests/conftest.py


@pytest.fixture(scope="module")
def standin():
    return build_lpips("alex", force_random=True)


def test_backbone_file_names_come_from_torchvision():
    assert backbone_filename("alex") == "alexnet-owt-7be5be79.pth"
    assert backbone_filename("vgg") == "vgg16-397923af.pth"
    with pytest.raises(ValueError, match="unknown LPIPS backbone"):
        backbone_filename("squeeze")


def test_missing_backbone_raises_without_download(no_network, empty_torch_home):
    expected = empty_torch_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert default_backbone_path("alex") == expected
    with pytest.raises(MissingWeightsError) as err:
        build_lpips("alex")
    message = str(err.value)
    assert "alexnet-owt-7be5be79.pth" in message and str(expected.parent) in message
    assert "No download is attempted" in message and err.value.metric == "lpips"
    with pytest.raises(MissingWeightsError, match="vgg16-397923af.pth"):
        build_lpips("vgg")


def test_allow_random_falls_back_to_labelled_standin(no_network, empty_torch_home):
    with pytest.warns(UserWarning, match="random stand-in"):
        model = build_lpips("alex", allow_random=True)
    assert model.rsvp_standin and model.rsvp_label == STANDIN_LABEL and model.rsvp_backbone_file is None


def test_standin_scores_frames(standin):
    assert standin.rsvp_standin and STANDIN_LABEL == "random stand-in, not real LPIPS"
    assert not any(p.requires_grad for p in standin.parameters())
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 4, 32, 32, generator=g) * 2 - 1
    b = (a + 0.3 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    d = lpips_per_frame(standin, b, a, chunk=3)
    assert d.shape == (2, 4) and d.dtype == torch.float64 and (d > 0).all()
    assert torch.allclose(lpips_per_frame(standin, a, a), torch.zeros(2, 4, dtype=torch.float64), atol=1e-7)
    gray = lpips_per_frame(standin, b[:, :1], a[:, :1])
    assert gray.shape == (2, 4)


def test_standin_is_differentiable_for_losses(standin):
    x = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    y = torch.rand(2, 3, 32, 32) * 2 - 1
    standin(x, y).mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_local_backbone_file_is_loaded_into_the_trunk(no_network, empty_torch_home):
    """A torchvision-format checkpoint at the cache path is used (random weights stand in for ImageNet)."""
    path = default_backbone_path("alex")
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    reference = torchvision.models.alexnet()
    torch.save(reference.state_dict(), path)
    # the file name promises a SHA-256 prefix our random file does not have
    with pytest.raises(ValueError, match="SHA-256"):
        build_lpips("alex")
    model = build_lpips("alex", check_hash=False)
    assert not model.rsvp_standin and model.rsvp_backbone_file == str(path)
    assert torch.equal(model.net.slice1[0].weight, reference.features[0].weight)
    assert torch.equal(model.net.slice5[-2].weight, reference.features[10].weight)
    # an explicit path works too, and a wrong file is a clear error
    other = path.parent / "other.pth"
    torch.save({"classifier.weight": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="features.0.weight"):
        build_lpips("alex", backbone_path=other, check_hash=False)
