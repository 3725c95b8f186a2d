"""LPIPS (Zhang et al. 2018) from the ``lpips`` package, loaded from local files only.

What ``lpips==0.1.4`` does by itself: ``lpips.LPIPS(net="alex")`` builds its trunk with
``torchvision.models.alexnet(pretrained=True)`` (``vgg16`` for ``net="vgg"``), which torchvision
0.29 turns into ``load_state_dict_from_url(<download.pytorch.org URL>, check_hash=True)``: the
file ``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth`` is read from
``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``, by default
``~/.cache/torch/hub/checkpoints``) and *downloaded when absent*. Its own linear-layer weights
ship inside the package (``lpips/weights/v0.1/{alex,vgg}.pth``).

:func:`build_lpips` never lets that download happen: it builds the trunk with random weights
(``pnet_rand=True``, no torchvision download), then loads the torchvision checkpoint itself from
the cache directory (or an explicit path), checks its SHA-256 prefix as torchvision would, and
raises :class:`~evaluation.weights.MissingWeightsError` naming the file and the folder it
belongs in when it is absent.

The returned module is the ``lpips.LPIPS`` network (eval mode, parameters frozen). Call it as
``model(x, y)`` on ``[N, 3, H, W]`` images in ``[-1, 1]``; it returns ``[N, 1, 1, 1]`` distances.
It is differentiable with respect to its inputs, so training losses can reuse it. Attributes
``rsvp_standin`` (bool), ``rsvp_label``, ``rsvp_net``, ``rsvp_backbone_file`` describe it.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from evaluation.weights import MissingWeightsError, sha256_file

LPIPS_NETS = ("alex", "vgg")
STANDIN_LABEL = "random stand-in, not real LPIPS"


def _torchvision_weights(net: str):
    from torchvision.models import AlexNet_Weights, VGG16_Weights

    return {"alex": AlexNet_Weights.IMAGENET1K_V1, "vgg": VGG16_Weights.IMAGENET1K_V1}[net]


def backbone_filename(net: str) -> str:
    """File name torchvision caches the ImageNet trunk under, e.g. ``alexnet-owt-7be5be79.pth``."""
    _check_net(net)
    return os.path.basename(_torchvision_weights(net).url)


def backbone_url(net: str) -> str:
    _check_net(net)
    return _torchvision_weights(net).url


def default_backbone_path(net: str) -> Path:
    """``torch.hub.get_dir()/checkpoints/<file>``: where torchvision itself would look."""
    return Path(torch.hub.get_dir()) / "checkpoints" / backbone_filename(net)


def linear_weights_path(net: str, version: str = "0.1") -> Path:
    import lpips

    return Path(lpips.__file__).resolve().parent / "weights" / f"v{version}" / f"{net}.pth"


def _check_net(net: str) -> None:
    if net not in LPIPS_NETS:
        raise ValueError(f"unknown LPIPS backbone {net!r}; choose one of {', '.join(LPIPS_NETS)}")


def missing_backbone_message(net: str, path: Path) -> str:
    return (
        f"LPIPS ({net}) needs the torchvision ImageNet weights file '{path.name}', which is not at "
        f"{path}. Put it in {path.parent}/ (that is $TORCH_HOME/hub/checkpoints; TORCH_HOME defaults "
        f"to ~/.cache/torch). On a machine with network access it is {backbone_url(net)} . "
        f"No download is attempted. To run without LPIPS leave 'lpips' out of --metrics."
    )


def _backbone_state(net: str, path: Path, check_hash: bool) -> dict:
    if check_hash:
        import re

        match = re.search(r"-([a-f0-9]{8,})\.", backbone_filename(net))
        digest = sha256_file(path)
        if match and not digest.startswith(match.group(1)):
            raise ValueError(f"{path}: SHA-256 {digest[:16]}... does not match the expected prefix "
                             f"{match.group(1)} of {backbone_filename(net)}; the file is corrupt or "
                             f"not the torchvision checkpoint")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def _load_trunk(model: torch.nn.Module, state: dict, path: Path) -> None:
    """Copy ``features.<i>.*`` of the torchvision checkpoint into lpips' ``slice<k>.<i>.*``."""
    target = model.net.state_dict()
    new_state = {}
    for key in target:
        _, index_and_param = key.split(".", 1)  # "slice1.0.weight" -> "0.weight"
        source = f"features.{index_and_param}"
        if source not in state:
            raise ValueError(f"{path}: key '{source}' missing; not a torchvision {type(model.net).__name__} checkpoint")
        if state[source].shape != target[key].shape:
            raise ValueError(f"{path}: '{source}' has shape {tuple(state[source].shape)}, expected {tuple(target[key].shape)}")
        new_state[key] = state[source]
    model.net.load_state_dict(new_state, strict=True)


def _load_linear(model: torch.nn.Module, net: str) -> None:
    path = linear_weights_path(net)
    if not path.is_file():
        raise MissingWeightsError(f"LPIPS linear-layer weights {path} are missing; they ship inside the "
                                  f"lpips package (reinstall lpips==0.1.4)", path=path, metric="lpips")
    state = torch.load(path, map_location="cpu", weights_only=True)
    import re

    # lin0..lin4 (lin0..lin6 for squeeze); "lins.<i>" are the same tensors registered twice.
    lin_keys = {k for k in model.state_dict() if re.match(r"lin\d", k)}
    if set(state) != lin_keys:
        raise ValueError(f"{path}: unexpected LPIPS linear-layer keys {sorted(set(state) ^ lin_keys)}")
    model.load_state_dict(state, strict=False)


def build_lpips(net: str = "alex", device: str | torch.device = "cpu", allow_random: bool = False,
                backbone_path: str | Path | None = None, force_random: bool = False,
                check_hash: bool = True) -> torch.nn.Module:
    """The LPIPS network with local weights only.

    net: ``"alex"`` (the default of video-prediction protocols) or ``"vgg"``.
    allow_random: when the trunk weights are missing, return a randomly initialised trunk (with a
        warning) instead of raising :class:`MissingWeightsError`. Its scores are not LPIPS.
    backbone_path: the torchvision checkpoint; default :func:`default_backbone_path`.
    force_random: always use a random trunk (tests). ``rsvp_standin`` is then True.
    check_hash: verify the SHA-256 prefix encoded in torchvision's file name.
    """
    import lpips

    _check_net(net)
    path = Path(backbone_path) if backbone_path is not None else default_backbone_path(net)
    standin = force_random
    if not standin and not path.is_file():
        if not allow_random:
            raise MissingWeightsError(missing_backbone_message(net, path), path=path, metric="lpips")
        warnings.warn(f"{missing_backbone_message(net, path)} Using a {STANDIN_LABEL}.", stacklevel=2)
        standin = True
    # pnet_rand=True: random trunk, so torchvision downloads nothing; pretrained=False: we load
    # the linear layers ourselves with a strict key check (lpips itself uses strict=False).
    with warnings.catch_warnings():  # torchvision's deprecation notes about lpips' "pretrained="
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        model = lpips.LPIPS(net=net, version="0.1", pretrained=False, pnet_rand=True, verbose=False)
    _load_linear(model, net)
    if not standin:
        _load_trunk(model, _backbone_state(net, path, check_hash), path)
        model.pnet_rand = False
    model.eval().requires_grad_(False)
    model.rsvp_standin = standin
    model.rsvp_net = net
    model.rsvp_label = STANDIN_LABEL if standin else f"LPIPS v0.1 ({net})"
    model.rsvp_backbone_file = None if standin else str(path)
    device = torch.device(device)
    # Move only when needed: ``.to`` re-registers every parameter, which fake-tensor tools
    # (scripts/measure_memory.py) cannot do for lpips' shared submodules.
    return model if next(model.parameters()).device == device else model.to(device)


def lpips_per_frame(model: torch.nn.Module, pred: torch.Tensor, target: torch.Tensor,
                    chunk: int = 64) -> torch.Tensor:
    """LPIPS of every frame: ``[..., C, T, H, W]`` in ``[-1, 1]`` x2 -> ``[..., T]`` (float64).

    ``model`` is any ``model(x, y) -> [N, 1, 1, 1]`` distance: LPIPS, or ST-LPIPS
    (:func:`evaluation.st_lpips.build_st_lpips`, scored the same way). Frames are scored at their
    own resolution (no resizing); one channel is repeated to RGB.
    """
    from einops import rearrange

    if pred.shape != target.shape:
        raise ValueError(f"prediction and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    lead, (c, t) = pred.shape[:-4], pred.shape[-4:-2]
    if c not in (1, 3):
        raise ValueError(f"LPIPS needs 1 or 3 channels, got {c}")
    device = next(model.parameters()).device
    x = rearrange(pred, "... c t h w -> (... t) c h w")
    y = rearrange(target, "... c t h w -> (... t) c h w")
    if c == 1:
        x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
    out = []
    with torch.no_grad():
        for i in range(0, x.shape[0], chunk):
            xb = x[i:i + chunk].to(device, torch.float32).clamp(-1, 1)
            yb = y[i:i + chunk].to(device, torch.float32).clamp(-1, 1)
            out.append(model(xb, yb).reshape(-1).double().cpu())
    values = torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)
    return values.reshape(*lead, t)
