"""Second-stage denoisers over the first stage's scene/object/motion latents.

All variants share one interface, ``forward(x_t, t, cond, cond_mask=None) -> Tensor`` (see
:mod:`models.unets.common`), and one constructor, ``Net(cfg, code_dim, latent_shapes)``, where
``cfg`` is the variant's own schema, ``Net.config_class`` (:mod:`models.unets.config`):

- ``rsvp_s2`` :class:`RSVPS2UNet` -- the main model: 3D convs, scene/object/motion streams joined
  by self-attention (:mod:`models.unets.rsvp_s2`);
- ``rsvp_s1`` :class:`RSVPS1UNet` -- per-frame 2D ablation, no temporal mixing (:mod:`models.unets.rsvp_s1`);
- ``rsvp_m`` :class:`RSVPMUNet` -- masked 2T-frame 3D U-Net with cross-attention to scene/object
  (:mod:`models.unets.rsvp_m`).

``pvdm_unet`` :class:`PVDMUNet` is the PVDM baseline's denoiser over its autoencoder's three latent
planes (:mod:`models.unets.pvdm_unet`; its own constructor and ``forward(x_t, t, cond, cond_mask)``;
registered when :func:`models.import_model_modules` imports it).
Importing this package registers the three RSVP names in :mod:`models`' registry.
"""
from models.unets.config import RSVPMConfig, RSVPS1Config, RSVPS2Config, UNetConfig, coerce_config
from models.unets.rsvp_m import RSVPMUNet
from models.unets.rsvp_s1 import RSVPS1UNet
from models.unets.rsvp_s2 import RSVPS2UNet

__all__ = [
    "RSVPMConfig", "RSVPS1Config", "RSVPS2Config", "UNetConfig", "coerce_config",
    "RSVPMUNet", "RSVPS1UNet", "RSVPS2UNet",
]
