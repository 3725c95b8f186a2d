"""models/__init__.py registry and the reconstruction loss helpers."""
import pytest
import torch
from torch import nn

import models
from losses import reconstruction_loss


@pytest.fixture
def registered():
    @models.register_model("registry_probe_net")
    class RegistryProbeNet(nn.Module):
        def __init__(self, width: int = 2) -> None:
            super().__init__()
            self.layer = nn.Linear(width, width)

    yield RegistryProbeNet
    models.MODELS.pop("registry_probe_net", None)


def test_build_model_by_name(registered):
    net = models.build_model("registry_probe_net", width=3)
    assert isinstance(net, registered) and net.layer.in_features == 3


def test_unknown_name_suggests_close_ones(registered):
    with pytest.raises(KeyError, match="Did you mean: registry_probe_net"):
        models.build_model("registry_probe_nett")


def test_a_name_cannot_be_taken_twice(registered):
    with pytest.raises(KeyError, match="already registered"):
        @models.register_model("registry_probe_net")
        class Other(nn.Module):
            pass


def test_reconstruction_loss_values():
    pred, target = torch.zeros(1, 1, 2, 1, 1), torch.tensor([1.0, -3.0]).view(1, 1, 2, 1, 1)
    assert reconstruction_loss(pred, target, "l1").item() == 2.0
    assert reconstruction_loss(pred, target, "mse").item() == 5.0
    assert reconstruction_loss(pred, target, "l1+mse").item() == 7.0
    with pytest.raises(ValueError, match="unknown reconstruction loss"):
        reconstruction_loss(pred, target, "huber")
    with pytest.raises(ValueError, match="shape"):
        reconstruction_loss(pred, target[:, :, :1], "l1")
