"""ST-LPIPS (Ghildyal & Liu, ECCV 2022), the shift-tolerant LPIPS, with our own network code.

The pretrained weights ship inside the ``stlpips-pytorch==0.0.2`` wheel
(``stlpips_pytorch/weights/vST0.0/{alex,vgg}_shift_tolerant.pth``, 9.9 MB and 58.9 MB): the
whole network -- trunk and linear heads -- so nothing has to be downloaded. That package's
modules import IPython and torchsummary at import time, so we never import it: the files are
located with :func:`importlib.util.find_spec` (which does not run the package) and loaded into
:class:`STLPIPS` below with ``strict=True``.

The architecture. LPIPS (Zhang et al. 2018) compares unit-normalised trunk features of two
images at five depths through 1x1 linear heads. ST-LPIPS makes the trunk shift-tolerant, as in
Zhang 2019 ("Making CNNs shift-invariant again"): every stride-2 step becomes a stride-1 op
followed by a blur-pool (reflect-pad by 2, depthwise [1 2 1]x[1 2 1]/16 binomial filter,
stride 2). AlexNet: the 11x11 conv runs at stride 1 and is blurred down; each 3x3 max pool
runs at stride 1 and is blurred down. VGG16: each 2x2 max pool runs at stride 1 and is blurred
down. Both trunks and heads were trained by the ST-LPIPS authors, so their values are NOT
LPIPS values and must never be reported as ``lpips``: the metric is named ``st_lpips``.

Call the model as ``model(x, y)`` on ``[N, 3, H, W]`` images in ``[-1, 1]``; it returns
``[N, 1, 1, 1]`` distances (0 for identical images, lower is more similar). It is
differentiable with respect to its inputs (a training loss), its parameters are frozen and it
stays in eval mode. Frames must be at least :data:`MIN_SIZE` pixels on each side.
"""
from __future__ import annotations

from collections import OrderedDict
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from evaluation.weights import MissingWeightsError, sha256_file

ST_LPIPS_NETS = ("alex", "vgg")
DISTRIBUTION = "stlpips-pytorch"        # pip name, pinned in requirements.txt
PACKAGE = "stlpips_pytorch"             # its import name; located, never imported
PINNED_VERSION = "0.0.2"
LABEL = "ST-LPIPS (shift-tolerant LPIPS, Ghildyal & Liu 2022); not comparable with LPIPS"
# SHA-256 of the files in stlpips_pytorch-0.0.2-py3-none-any.whl.
WEIGHTS_SHA256 = {
    "alex": "b356b382f96010f77d085ee8343ecd9fd322d0a56e8de2b2d0549fafcad8b9ee",
    "vgg": "44597da68f49c1837c100ff52299050f274d102eb102e5837178c79be6f0e250",
}
MIN_SIZE = {"alex": 21, "vgg": 18}  # smaller frames leave a deep blur-pool too few pixels to reflect


# ----------------------------------------------------------------------------------------------
# Locating the weights


def _check_net(net: str) -> None:
    if net not in ST_LPIPS_NETS:
        raise ValueError(f"unknown ST-LPIPS backbone {net!r}; choose one of {', '.join(ST_LPIPS_NETS)}")


def package_version() -> str | None:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return None


def weights_path(net: str) -> Path:
    """Where the installed ``stlpips_pytorch`` keeps ``<net>_shift_tolerant.pth`` (package not imported)."""
    _check_net(net)
    relative = Path("weights") / "vST0.0" / f"{net}_shift_tolerant.pth"
    spec = find_spec(PACKAGE)  # a top-level spec: the package's code is not run
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(
            f"ST-LPIPS ({net}) needs the weights that ship inside the '{DISTRIBUTION}' wheel, which is not "
            f"installed. Install it with: pip install {DISTRIBUTION}=={PINNED_VERSION} (it is in "
            f"requirements.txt). No download is attempted at run time. To run without ST-LPIPS leave "
            f"'st_lpips' out of --metrics.", path=relative, metric="st_lpips")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise MissingWeightsError(
            f"ST-LPIPS ({net}) weights file {path} is missing from the installed '{DISTRIBUTION}' "
            f"(version {package_version()}); reinstall {DISTRIBUTION}=={PINNED_VERSION}.",
            path=path, metric="st_lpips")
    return path


# ----------------------------------------------------------------------------------------------
# The network


class BlurPool(nn.Module):
    """Anti-aliased stride-2 subsampling: reflect-pad 2, per-channel binomial 3x3 blur, stride 2.

    The filter is a buffer named ``filt`` because the weights files store it (as a constant).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        tap = torch.tensor([1.0, 2.0, 1.0])
        kernel = torch.outer(tap, tap) / 16.0
        self.register_buffer("filt", kernel.expand(channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.filt, stride=2, groups=x.shape[1])


def _alexnet_layers() -> list[nn.Module]:
    return [
        nn.Conv2d(3, 64, 11, stride=1, padding=2), BlurPool(64), nn.ReLU(),          # 0-2   -> relu1
        nn.MaxPool2d(3, stride=1), BlurPool(64), nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),   # 3-6 -> relu2
        nn.MaxPool2d(3, stride=1), BlurPool(192), nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),  # 7-10 -> relu3
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),                                 # 11-12 -> relu4
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),                                 # 13-14 -> relu5
    ]


# VGG16 ("D"): 3x3 convs; "M" is a 2x2 max pool at stride 1 followed by a blur-pool.
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


def _vgg16_layers() -> list[nn.Module]:
    layers: list[nn.Module] = []
    channels = 3
    for item in _VGG16:
        if item == "M":
            layers += [nn.MaxPool2d(2, stride=1), BlurPool(channels)]
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU()]
            channels = item
    return layers


# net -> (layer list, index where each of the five compared stages ends, channels of each stage)
_TRUNKS = {
    "alex": (_alexnet_layers, (3, 7, 11, 13, 15), (64, 192, 384, 256, 256)),
    "vgg": (_vgg16_layers, (4, 10, 18, 26, 34), (64, 128, 256, 512, 512)),
}


class Trunk(nn.Module):
    """``slice1 .. slice5``: consecutive runs of the layer list, children named by their global
    index (the key layout of the weights files); ``forward`` returns the five stage outputs."""

    def __init__(self, layers: list[nn.Module], ends: tuple[int, ...]) -> None:
        super().__init__()
        start = 0
        for k, end in enumerate(ends, start=1):
            self.add_module(f"slice{k}", nn.Sequential(OrderedDict((str(i), layers[i]) for i in range(start, end))))
            start = end

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stages = []
        for stage in self.children():
            x = stage(x)
            stages.append(x)
        return stages


class LinearHead(nn.Module):
    """A 1x1 conv to one channel; held at ``model.1`` (``model.0`` was dropout during training)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class STLPIPS(nn.Module):
    """ST-LPIPS distance between two batches of images in ``[-1, 1]``; see the module docstring."""

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        _check_net(net)
        build_layers, ends, channels = _TRUNKS[net]
        self.net_name = net
        # LPIPS v0.1 input scaling: (x - shift) / scale, per RGB channel.
        self.scaling_layer = nn.Module()
        self.scaling_layer.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.scaling_layer.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.net = Trunk(build_layers(), ends)
        for k, c in enumerate(channels):
            self.add_module(f"lin{k}", LinearHead(c))
        self.eval()

    def train(self, mode: bool = True) -> "STLPIPS":
        return super().train(False)  # a fixed metric: eval mode whatever the caller asks

    @staticmethod
    def unit_length(f: torch.Tensor) -> torch.Tensor:
        """Unit length over channels at every position. vector_norm's gradient is 0, not the NaN
        of a hand-written sqrt, where a feature vector is all zeros."""
        return f / (torch.linalg.vector_norm(f, dim=1, keepdim=True) + 1e-10)

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.scaling_layer.shift) / self.scaling_layer.scale
        return [self.unit_length(f) for f in self.net(x)]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        smallest = min(x.shape[-2:])
        if smallest < MIN_SIZE[self.net_name]:
            raise ValueError(f"ST-LPIPS ({self.net_name}) needs frames of at least {MIN_SIZE[self.net_name]} "
                             f"pixels per side, got {tuple(x.shape[-2:])}")
        total = x.new_zeros(x.shape[0], 1, 1, 1)
        for k, (fx, fy) in enumerate(zip(self._features(x), self._features(y))):
            head = getattr(self, f"lin{k}")
            total = total + head((fx - fy) ** 2).mean(dim=(2, 3), keepdim=True)
        return total


def build_st_lpips(net: str = "alex", device: str | torch.device = "cpu", check_hash: bool = True,
                   path: str | Path | None = None) -> STLPIPS:
    """ST-LPIPS with the pretrained weights of the installed ``stlpips-pytorch`` wheel.

    Raises :class:`MissingWeightsError` (``metric="st_lpips"``) when the wheel is not installed.
    ``check_hash`` compares the file with the SHA-256 of the 0.0.2 wheel; ``path`` overrides the
    file (tests). Attributes ``rsvp_net``, ``rsvp_label``, ``rsvp_weights_file`` describe it.
    """
    _check_net(net)
    path = Path(path) if path is not None else weights_path(net)
    if check_hash and sha256_file(path) != WEIGHTS_SHA256[net]:
        raise ValueError(f"{path}: SHA-256 differs from the {net} weights of {DISTRIBUTION}=={PINNED_VERSION}; "
                         f"the file is corrupt or from another version (installed: {package_version()})")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = STLPIPS(net)
    model.load_state_dict(state, strict=True)
    model.requires_grad_(False)
    model.rsvp_net = net
    model.rsvp_label = f"ST-LPIPS ({net})"
    model.rsvp_weights_file = str(path)
    return model.to(device)
