"""Training losses: reconstruction (here), perceptual and adversarial ones (added by their stages)."""
from losses.reconstruction import RECONSTRUCTION_KINDS, reconstruction_loss

__all__ = ["RECONSTRUCTION_KINDS", "reconstruction_loss"]
