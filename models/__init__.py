"""Model registry: one name -> class table instead of if/else chains in the entry points.

A model module registers its classes at import time::

    from models import register_model

    @register_model("moso_vqvae")
    class MosoVQVAE(nn.Module): ...

and an entry point builds one by name: ``build_model(cfg.model.name, **cfg.model.kwargs)``.
The modules that define models are imported by :func:`import_model_modules` on first use (a new
model module is added there), so the registry is complete without importing every model up front.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable, TypeVar

from torch import nn

T = TypeVar("T", bound=type)

MODELS: dict[str, type[nn.Module]] = {}


def register_model(name: str) -> Callable[[T], T]:
    """Class decorator adding ``cls`` to :data:`MODELS` under ``name`` (names are unique)."""

    def decorator(cls: T) -> T:
        existing = MODELS.get(name)
        if existing is not None and existing is not cls:
            # Re-importing the same module (e.g. importlib.reload) re-registers the same qualified name.
            if (existing.__module__, existing.__qualname__) != (cls.__module__, cls.__qualname__):
                raise KeyError(f"model name '{name}' is already registered by {existing.__module__}.{existing.__qualname__}")
        MODELS[name] = cls
        return cls

    return decorator


def import_model_modules() -> None:
    """Import every module that registers models (their ``@register_model`` classes)."""
    from models import discriminators, moso, unets  # noqa: F401
    from models.unets import lvdm_unet, pvdm_unet  # noqa: F401


def get_model_class(name: str) -> type[nn.Module]:
    if name not in MODELS:
        import_model_modules()
    if name not in MODELS:
        close = difflib.get_close_matches(name, list(MODELS), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        known = ", ".join(sorted(MODELS)) or "none registered"
        raise KeyError(f"Unknown model '{name}'.{hint} Known models: {known}.")
    return MODELS[name]


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate the model registered as ``name`` with ``kwargs``."""
    return get_model_class(name)(**kwargs)
