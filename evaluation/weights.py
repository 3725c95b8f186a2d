"""Locating pretrained weight files on disk. Nothing here touches the network."""
from __future__ import annotations

import hashlib
from pathlib import Path


class MissingWeightsError(FileNotFoundError):
    """A pretrained weight file is not on disk. The message says which file and where it goes.

    ``metric`` names what cannot be computed without it (``"lpips"``, ``"fvd"``, ...); callers that
    can go on without that metric catch this, record ``str(err)`` and compute the rest.
    """

    def __init__(self, message: str, *, path: Path | None = None, metric: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.metric = metric


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
