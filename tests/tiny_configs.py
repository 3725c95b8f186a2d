"""Tiny settings shared by the stage tests (seconds on a CPU)."""

# A few-second model on 32x32, 4-frame clips. LPIPS uses a RANDOMLY INITIALISED backbone here
# (model.perceptual.random_backbone=true): these tests check plumbing, not perceptual quality.
TINY = [
    "data.resolution=32", "data.frames=4", "data.num_workers=0",
    "data.shapes.num_train=16", "data.shapes.num_test=4",
    "train.batch_size=2", "train.log_every=1", "train.ckpt_every=2", "train.sample_every=2",
    "train.optim.schedule=constant", "train.optim.warmup_steps=0",
    "model.vqvae.hidden=16", "model.vqvae.res_depth=1", "model.vqvae.attn_heads=2",
    "model.vqvae.codebook_size=32", "model.vqvae.code_dim=4", "model.vqvae.max_frames=4",
    "model.vqvae.full_input_step=2",
    "model.perceptual.random_backbone=true", "model.perceptual.frames=2", "model.eval_clips=2",
    "model.gan.channels=8", "model.gan.clip_channels=8", "model.gan.n_layers=2",
]

# A tiny second stage over the TINY first stage (2 observed frames, 2 sampling steps).
TINY_DDPM = [
    "data.num_workers=0", "data.shapes.num_train=8", "data.shapes.num_test=2",
    "train.batch_size=2", "train.log_every=1", "train.ckpt_every=2", "train.sample_every=2",
    "train.optim.schedule=constant", "train.optim.warmup_steps=0",
    "model.cond_frames=2", "model.scale_clips=4", "model.eval_clips=2",
    "model.unet.channels=16", "model.unet.channel_mults=[1,2]", "model.unet.num_res_blocks=1",
    "model.unet.attn_levels=[1]", "model.unet.attn_head_dim=8",
    "model.diffusion.sample_steps=2",
]
# Per denoiser (model.net): the settings of its own schema that TINY_DDPM leaves at their defaults.
TINY_NET = {"rsvp_s2": [], "rsvp_s1": [], "rsvp_m": ["model.unet.context_channels=16"]}

# The data and training settings of a tiny baseline-autoencoder run (PVDM, LVDM), its model sizes aside.
TINY_AUTOENCODER_RUN = [
    "data.resolution=32", "data.frames=4", "data.num_workers=0", "data.shapes.num_train=16", "data.shapes.num_test=4",
    "train.batch_size=2", "train.log_every=1", "train.ckpt_every=2", "train.sample_every=2",
    "train.optim.schedule=constant", "train.optim.warmup_steps=0",
]
