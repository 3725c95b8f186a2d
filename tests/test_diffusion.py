"""Diffusion core: schedules, forward process, parametrisations, training loss, samplers, guidance.

Samplers are checked against denoisers whose optimum is known in closed form:
- point-mass data x0 = c: E[x0 | x_t] = c, so every sampler must return c;
- Gaussian data x0 ~ N(mu, s^2): E[x0 | x_t] = mu + a s^2 / (a^2 s^2 + b^2) (x_t - a mu) with
  a = sqrt(abar_t), b = sqrt(1 - abar_t). Deterministic samplers are compared sample by sample
  with float64 re-implementations of DDIM and DPM-Solver++(2M); DDPM by its exact mean/variance.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from omegaconf import OmegaConf

from models.diffusion import (DiffusionConfig, GaussianDiffusion, GuidedDenoiser, build_diffusion,
                              sampling_timesteps)
from tools.config import ConfigError

# diffusers' DPM scheduler calls np.array(tensor, copy=False) internally (numpy 2 deprecation; harmless)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

SCHEDULES = ["linear", "cosine"]
PREDICTIONS = ["eps", "v"]
SCHEDULER_CLASSES = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpm": DPMSolverMultistepScheduler}
MU, SIGMA = 1.5, 0.5  # Gaussian toy data


def make(**kwargs) -> GaussianDiffusion:
    return build_diffusion(DiffusionConfig(**kwargs))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def abar64(d: GaussianDiffusion) -> torch.Tensor:
    """Reference float64 alpha_bar, computed independently of the module."""
    n = d.num_timesteps
    if d.cfg.schedule == "linear":
        betas = np.linspace(d.cfg.beta_start, d.cfg.beta_end, n, dtype=np.float64)
    else:
        f = lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = np.array([min(1 - f((i + 1) / n) / f(i / n), 0.999) for i in range(n)])
    return torch.from_numpy(np.cumprod(1 - betas))


def coefs(d: GaussianDiffusion, t, like: torch.Tensor):
    ab = d.alphas_cumprod.double()[t].to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))
    return ab.sqrt(), (1 - ab).sqrt()


def as_output(d: GaussianDiffusion, x_t, t, x0):
    """The model output (eps or v) that corresponds to the estimate x0 at (x_t, t)."""
    a, b = coefs(d, t, x_t)
    eps = (x_t - a * x0) / b
    return eps if d.prediction == "eps" else a * eps - b * x0


def point_mass_oracle(d: GaussianDiffusion, c: torch.Tensor):
    return lambda x, t, cond, mask: as_output(d, x, t, c.expand_as(x))


def gaussian_posterior_mean(a, b, x):
    return MU + a * SIGMA**2 / (a**2 * SIGMA**2 + b**2) * (x - a * MU)


def gaussian_oracle(d: GaussianDiffusion):
    def fn(x, t, cond, mask):
        a, b = coefs(d, t, x)
        return as_output(d, x, t, gaussian_posterior_mean(a, b, x))
    return fn


# ------------------------------------------------------------------------------------ config
def test_config_defaults_and_omegaconf_node_build():
    cfg = DiffusionConfig()
    assert (cfg.num_timesteps, cfg.schedule, cfg.prediction, cfg.sampler, cfg.timestep_spacing) == (
        1000, "linear", "eps", "ddim", "trailing")
    node = OmegaConf.merge(OmegaConf.structured(DiffusionConfig), {"schedule": "cosine", "prediction": "v"})
    d = build_diffusion(node)
    assert (d.cfg.schedule, d.prediction) == ("cosine", "v")
    assert build_diffusion({"num_timesteps": 10, "sample_steps": 5}).num_timesteps == 10


@pytest.mark.parametrize("field,value", [
    ("schedule", "quadratic"), ("prediction", "x0"), ("sampler", "euler"), ("timestep_spacing", "even"),
    ("num_timesteps", 1), ("sample_steps", 0), ("sample_steps", 1001), ("cond_drop_prob", 1.5),
    ("beta_end", 1e-5), ("ddim_eta", -1.0),
])
def test_bad_config_values_raise_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        make(**{field: value})


def test_unknown_config_key_is_a_config_error():
    with pytest.raises(ConfigError, match="num_steps"):
        build_diffusion({"num_steps": 10})


# ------------------------------------------------------------------------------------ schedules
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedule_buffers_match_float64_reference(schedule):
    d = make(schedule=schedule)
    ref = abar64(d)
    for name in ("betas", "alphas_cumprod", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod"):
        buf = getattr(d, name)
        assert buf.dtype == torch.float32 and buf.shape == (1000,)
    # float32 storage of float64 values: relative error at float32 rounding, even at the tail.
    torch.testing.assert_close(d.alphas_cumprod.double(), ref, rtol=1e-7, atol=0)
    torch.testing.assert_close(d.sqrt_one_minus_alphas_cumprod.double(), (1 - ref).sqrt(), rtol=1e-7, atol=0)
    assert torch.all(d.alphas_cumprod[1:] < d.alphas_cumprod[:-1])
    # Schedules come from the config, not from checkpoints, but follow .to(device).
    assert d.state_dict() == {}
    assert {n for n, _ in d.named_buffers()} >= {"betas", "alphas_cumprod"}


def test_cosine_schedule_is_the_cos_squared_curve():
    d = make(schedule="cosine")
    s = (torch.arange(1, 1000, dtype=torch.float64) / 1000)
    f = lambda u: torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    expected = f(s) / f(torch.zeros(1, dtype=torch.float64))  # telescoped product, before the beta cap bites
    torch.testing.assert_close(d.alphas_cumprod[:-1].double(), expected, rtol=2e-6, atol=0)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm"])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_alphas_cumprod_equal_diffusers(schedule, sampler):
    d = make(schedule=schedule)
    ours = d.scheduler(sampler)
    assert torch.equal(ours.betas, d.betas)  # the very same betas are handed over
    name = {"linear": "linear", "cosine": "squaredcos_cap_v2"}[schedule]
    native = SCHEDULER_CLASSES[sampler](num_train_timesteps=1000, beta_schedule=name, beta_start=1e-4, beta_end=0.02)
    # diffusers accumulates the product in float32, we in float64: equal up to float32 rounding.
    for theirs in (ours, native):
        torch.testing.assert_close(theirs.alphas_cumprod, d.alphas_cumprod, rtol=2e-5, atol=1e-9)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_schedulers_are_configured_explicitly(prediction):
    d = make(prediction=prediction)
    ptype = {"eps": "epsilon", "v": "v_prediction"}[prediction]
    ddpm, ddim, dpm = (d.scheduler(s).config for s in ("ddpm", "ddim", "dpm"))
    for c in (ddpm, ddim, dpm):
        assert c.prediction_type == ptype and c.thresholding is False and c.timestep_spacing == "trailing"
    assert ddpm.clip_sample is False and ddpm.variance_type == "fixed_small"
    assert ddim.clip_sample is False and ddim.set_alpha_to_one is True
    assert (dpm.algorithm_type, dpm.solver_order, dpm.final_sigmas_type, dpm.use_karras_sigmas) == (
        "dpmsolver++", 2, "zero", False)


# ------------------------------------------------------------------------------------ forward process
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_q_sample_is_the_closed_form(schedule):
    d = make(schedule=schedule)
    x0 = torch.randn(4, 2, 3, 5, 5, generator=gen(1), dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=gen(2), dtype=torch.float64)
    t = torch.tensor([0, 17, 500, 999])
    ab = abar64(d)[t].reshape(-1, 1, 1, 1, 1)
    torch.testing.assert_close(d.q_sample(x0, t, noise), ab.sqrt() * x0 + (1 - ab).sqrt() * noise, rtol=1e-6, atol=1e-7)
    # an int timestep means the same t for the whole batch
    torch.testing.assert_close(d.q_sample(x0, 500, noise), d.q_sample(x0, torch.full((4,), 500), noise))


def test_forward_process_moments():
    d = make()
    n = 200_000
    x0 = torch.tensor([-1.0, 0.5, 2.0]).repeat(n, 1)
    for t in (0, 300, 999):
        xt = d.q_sample(x0, t, torch.randn(x0.shape, generator=gen(t)))
        ab = abar64(d)[t].item()
        mean, var = math.sqrt(ab) * x0[0], torch.full((3,), 1 - ab)
        se_mean = math.sqrt((1 - ab) / n)
        torch.testing.assert_close(xt.mean(0).double(), mean.double(), atol=5 * se_mean, rtol=0)
        torch.testing.assert_close(xt.var(0).double(), var.double(), atol=5 * (1 - ab) * math.sqrt(2 / n), rtol=0)


def test_bad_timesteps_are_rejected():
    d = make()
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="timesteps must be in"):
        d.q_sample(x, torch.tensor([0, 1000]), x)
    with pytest.raises(ValueError, match="integer tensor"):
        d.q_sample(x, torch.tensor([0.5, 1.0]), x)
    with pytest.raises(ValueError, match="integer tensor"):
        d.q_sample(x, torch.tensor([1, 2, 3]), x)


# ------------------------------------------------------------------------------------ parametrisations
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_prediction_conversions_round_trip(prediction, schedule):
    d = make(prediction=prediction, schedule=schedule)
    t = torch.tensor([0, 1, 250, 500, 900, 999])
    x0 = torch.randn(6, 4, 3, 3, generator=gen(3), dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=gen(4), dtype=torch.float64)
    x_t = d.q_sample(x0, t, eps)
    target = d.training_target(x0, eps, t)
    ab = abar64(d)[t].reshape(-1, 1, 1, 1)
    v = ab.sqrt() * eps - (1 - ab).sqrt() * x0  # Salimans & Ho; diffusers' get_velocity
    torch.testing.assert_close(target, eps if prediction == "eps" else v, rtol=0, atol=1e-6)
    x0_hat, eps_hat = d.split_prediction(x_t, t, target)
    # v round trips use a^2 + b^2 = 1, true up to float32 rounding of the stored coefficients
    torch.testing.assert_close(x0_hat, x0, rtol=0, atol=1e-6)
    torch.testing.assert_close(eps_hat, eps, rtol=0, atol=1e-6)
    torch.testing.assert_close(d.predict_x0(x_t, t, target), x0_hat)
    torch.testing.assert_close(d.predict_eps(x_t, t, target), eps_hat)


# ------------------------------------------------------------------------------------ training loss
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_training_loss_is_zero_for_the_oracle_and_one_for_zero_output(prediction, schedule):
    d = make(prediction=prediction, schedule=schedule)
    x0 = torch.randn(64, 4, 2, 4, 4, generator=gen(5))
    cond = {"scene": torch.randn(64, 3), "names": ["a"]}
    seen = {}

    def oracle(x_t, t, c, mask):
        seen.update(cond=c, t=t, mask=mask)
        return as_output(d, x_t.double(), t, x0.double()).float()

    out = d.training_loss(oracle, x0, cond, generator=gen(6))
    assert out["loss"].ndim == 0 and out["loss"].item() < 1e-8
    assert seen["cond"] is cond  # passed through untouched
    assert seen["t"].dtype == torch.int64 and seen["t"].shape == (64,) and torch.equal(seen["t"], out["t"])
    assert seen["mask"].dtype == torch.bool and torch.equal(seen["mask"], out["cond_mask"])
    assert out["loss_per_sample"].shape == (64,) and not out["loss_per_sample"].requires_grad
    # E[eps^2] = 1 and E[v^2] = abar E[eps^2] + (1 - abar) E[x0^2] = 1 for unit-variance x0
    zero = d.training_loss(lambda x, t, c, m: torch.zeros_like(x), x0, cond, generator=gen(6))
    assert 0.9 < zero["loss"].item() < 1.1


def test_training_loss_has_gradients_and_uses_the_given_draws():
    d = make(prediction="v")
    w = torch.zeros((), requires_grad=True)
    x0 = torch.randn(8, 3, generator=gen(7))
    t = torch.arange(8) * 100
    noise = torch.randn(8, 3, generator=gen(8))
    out = d.training_loss(lambda x, tt, c, m: w * x, x0, t=t, noise=noise, cond_mask=torch.ones(8, dtype=torch.bool))
    out["loss"].backward()
    assert w.grad is not None and w.grad.item() != 0
    expected = d.training_target(x0, noise, t).pow(2).mean()
    torch.testing.assert_close(out["loss"].detach(), expected)
    with pytest.raises(ValueError, match="shape"):
        d.training_loss(lambda x, tt, c, m: x[:, :2], x0, generator=gen(0))
    with pytest.raises(ValueError, match="timesteps must be in"):
        d.training_loss(lambda x, tt, c, m: x, x0, t=torch.full((8,), 1000))


def test_training_draws_come_from_the_generator():
    d = make(num_timesteps=100, sample_steps=10)
    x0 = torch.randn(4096, 2)
    model = lambda x, t, c, m: torch.zeros_like(x)  # noqa: E731
    state = torch.get_rng_state()
    first = d.training_loss(model, x0, generator=gen(9))
    second = d.training_loss(model, x0, generator=gen(9))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first["t"], second["t"]) and torch.equal(first["loss"], second["loss"])
    t = first["t"]
    assert t.min() == 0 and t.max() == 99  # uniform over all N timesteps
    assert abs(t.float().mean().item() - 49.5) < 5 * 28.9 / math.sqrt(4096)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 1.0])
def test_cond_mask_drop_rate(p):
    d = make(cond_drop_prob=p)
    n = 40_000
    out = d.training_loss(lambda x, t, c, m: torch.zeros_like(x), torch.zeros(n, 1), generator=gen(10))
    dropped = (~out["cond_mask"]).float().mean().item()
    assert abs(dropped - p) <= 5 * math.sqrt(p * (1 - p) / n)  # exact for p in {0, 1}


# ------------------------------------------------------------------------------------ timesteps
@pytest.mark.parametrize("steps", [1, 7, 20, 50, 250, 1000])
@pytest.mark.parametrize("spacing", ["trailing", "leading", "linspace"])
def test_sampling_timesteps_follow_diffusers_spacing(spacing, steps):
    s = DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing)
    s.set_timesteps(steps)
    assert sampling_timesteps(1000, steps, spacing) == s.timesteps.tolist()


def test_sampling_timesteps_fix_diffusers_extra_step():
    # diffusers' trailing arange yields 62 timesteps ending in -1 for 61 steps
    s = DDIMScheduler(num_train_timesteps=1000, timestep_spacing="trailing")
    s.set_timesteps(61)
    ours = sampling_timesteps(1000, 61, "trailing")
    assert len(ours) == 61 and ours[-1] >= 0 and ours == s.timesteps.tolist()[:61]
    for steps in range(1, 1001):
        ts = sampling_timesteps(1000, steps, "trailing")
        assert len(ts) == steps and ts[0] == 999 and ts[-1] >= 0


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm"])
def test_sampling_calls_the_model_at_the_trailing_timesteps(sampler):
    d = make()
    calls = []

    def model(x, t, c, m):
        calls.append(t.clone())
        return torch.zeros_like(x)

    d.sample(model, (3, 2), generator=gen(), sampler=sampler, steps=61)
    assert len(calls) == 61
    assert all(t.dtype == torch.int64 and t.shape == (3,) and len(set(t.tolist())) == 1 for t in calls)
    assert [int(t[0]) for t in calls] == sampling_timesteps(1000, 61, "trailing")


# ------------------------------------------------------------------------------------ samplers
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("sampler,steps", [("ddpm", 50), ("ddpm", 61), ("ddim", 50), ("ddim", 7), ("ddim", 61),
                                           ("dpm", 20), ("dpm", 7), ("dpm", 61)])
def test_samplers_recover_a_point_mass(sampler, steps, prediction, schedule):
    d = make(prediction=prediction, schedule=schedule)
    c = torch.randn(1, 4, 3, 4, 4, generator=gen(11)) * 2
    x = d.sample(point_mass_oracle(d, c), (2, 4, 3, 4, 4), generator=gen(12), sampler=sampler, steps=steps)
    assert x.dtype == torch.float32 and x.shape == (2, 4, 3, 4, 4)
    torch.testing.assert_close(x, c.expand_as(x), rtol=0, atol=1e-3)


def reference_ddim(d: GaussianDiffusion, x: torch.Tensor, steps: int) -> torch.Tensor:
    """float64 DDIM (eta = 0) with the exact Gaussian denoiser; diffusers' jump t -> t - N // steps."""
    ab = d.alphas_cumprod.double()
    ts = sampling_timesteps(d.num_timesteps, steps, "trailing")
    for i, t in enumerate(ts):
        a, b = ab[t].sqrt(), (1 - ab[t]).sqrt()
        x0 = gaussian_posterior_mean(a, b, x)
        if i == len(ts) - 1:
            return x0
        eps = (x - a * x0) / b
        prev = t - d.num_timesteps // steps
        ab_prev = ab[prev] if prev >= 0 else torch.tensor(1.0, dtype=torch.float64)
        x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
    raise AssertionError("no steps")


def reference_dpm_2m(d: GaussianDiffusion, x: torch.Tensor, steps: int) -> torch.Tensor:
    """float64 DPM-Solver++(2M), midpoint form, first order at the first and last step, sigma_end = 0."""
    ab = d.alphas_cumprod.double()
    ts = sampling_timesteps(d.num_timesteps, steps, "trailing")
    alpha = [ab[t].sqrt() for t in ts] + [torch.tensor(1.0, dtype=torch.float64)]
    sigma = [(1 - ab[t]).sqrt() for t in ts] + [torch.tensor(0.0, dtype=torch.float64)]
    lam = [torch.log(a) - torch.log(s) for a, s in zip(alpha, sigma)]
    prev_x0 = None
    for i in range(len(ts)):
        x0 = gaussian_posterior_mean(alpha[i], sigma[i], x)
        if i == len(ts) - 1:
            return x0  # sigma_end = 0: the first-order step lands on the x0 estimate
        h = lam[i + 1] - lam[i]
        phi = torch.expm1(-h)
        if prev_x0 is None:
            d_term = x0
        else:
            r = (lam[i] - lam[i - 1]) / h
            d_term = x0 + 0.5 * (x0 - prev_x0) / r
        x = sigma[i + 1] / sigma[i] * x - alpha[i + 1] * phi * d_term
        prev_x0 = x0
    raise AssertionError("no steps")


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("sampler,steps", [("ddim", 50), ("ddim", 7), ("dpm", 20), ("dpm", 7)])
def test_deterministic_samplers_match_float64_reference(sampler, steps, prediction, schedule):
    d = make(prediction=prediction, schedule=schedule)
    noise = torch.randn(512, 1, generator=gen(13))
    x = d.sample(gaussian_oracle(d), noise.shape, generator=gen(0), sampler=sampler, steps=steps, noise=noise)
    ref = (reference_ddim if sampler == "ddim" else reference_dpm_2m)(d, noise.double(), steps)
    torch.testing.assert_close(x.double(), ref, rtol=0, atol=2e-3)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_ddpm_matches_exact_moments(prediction, schedule):
    """Ancestral steps with the posterior variance: the output is Gaussian with a computable mean/var."""
    d = make(prediction=prediction, schedule=schedule)
    steps, n = 50, 20_000
    ab = d.alphas_cumprod.double()
    ts = sampling_timesteps(1000, steps, "trailing")
    mean, var = 0.0, 1.0
    for i, t in enumerate(ts):
        a, b = ab[t].sqrt(), (1 - ab[t]).sqrt()
        k = a * SIGMA**2 / (a**2 * SIGMA**2 + b**2)  # x0_hat = MU + k (x - a MU)
        if i == len(ts) - 1:
            mean, var = MU + k * (mean - a * MU), k**2 * var
            break
        ab_prev = ab[ts[i + 1]]
        beta = 1 - ab[t] / ab_prev
        c0, c1 = ab_prev.sqrt() * beta / (1 - ab[t]), (1 - beta).sqrt() * (1 - ab_prev) / (1 - ab[t])
        mean = c0 * (MU + k * (mean - a * MU)) + c1 * mean
        var = (c0 * k + c1) ** 2 * var + (1 - ab_prev) / (1 - ab[t]) * beta
    x = d.sample(gaussian_oracle(d), (n, 1), generator=gen(14), sampler="ddpm", steps=steps).double()
    std = float(var) ** 0.5
    assert abs(x.mean().item() - float(mean)) < 5 * std / math.sqrt(n)
    assert abs(x.std().item() - std) < 5 * std / math.sqrt(2 * n)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("sampler,steps,tol", [("dpm", 50, 0.015), ("ddim", 50, 0.03)])
def test_samplers_reproduce_gaussian_data(sampler, steps, tol, schedule):
    d = make(schedule=schedule, prediction="v")
    x = d.sample(gaussian_oracle(d), (20_000, 1), generator=gen(15), sampler=sampler, steps=steps)
    assert abs(x.mean().item() - MU) < 0.02 and abs(x.std().item() - SIGMA) < tol


@pytest.mark.slow
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_full_ddpm_reproduces_gaussian_data(schedule):
    d = make(schedule=schedule)
    x = d.sample(gaussian_oracle(d), (20_000, 1), generator=gen(16), sampler="ddpm", steps=1000)
    assert abs(x.mean().item() - MU) < 0.015 and abs(x.std().item() - SIGMA) < 0.01


# ------------------------------------------------------------------------------------ guidance
class StubModel:
    """eps = x * 0.1 + cond["bias"] when conditioned, x * -0.2 - 1 when not; records calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, t, cond, mask):
        self.calls.append((x.shape[0], mask.clone(), cond))
        cond_out = 0.1 * x + cond["bias"].reshape(-1, *([1] * (x.ndim - 1)))
        uncond_out = -0.2 * x - 1.0
        return torch.where(mask.reshape(-1, *([1] * (x.ndim - 1))), cond_out, uncond_out)


def stub_cond(batch: int):
    return {"bias": torch.arange(batch, dtype=torch.float32), "extra": [torch.ones(batch, 2)], "name": "scene"}


def test_guidance_one_is_the_conditional_output():
    model, cond = StubModel(), stub_cond(3)
    x, t = torch.randn(3, 2, 4), torch.full((3,), 10)
    out = GuidedDenoiser(model, cond, 1.0, 3, torch.device("cpu"))(x, t)
    assert len(model.calls) == 1 and model.calls[0][1].all() and model.calls[0][2] is cond
    torch.testing.assert_close(out, 0.1 * x + cond["bias"].reshape(3, 1, 1), rtol=0, atol=0)
    out0 = GuidedDenoiser(model, cond, 0.0, 3, torch.device("cpu"))(x, t)
    assert not model.calls[-1][1].any()
    torch.testing.assert_close(out0, -0.2 * x - 1.0, rtol=0, atol=0)


@pytest.mark.parametrize("batch_cfg", [True, False])
def test_guidance_combination_and_batching(batch_cfg):
    model, cond, w = StubModel(), stub_cond(3), 3.5
    x, t = torch.randn(3, 2, 4), torch.full((3,), 10)
    out = GuidedDenoiser(model, cond, w, 3, torch.device("cpu"), batch_cfg=batch_cfg)(x, t)
    c, u = 0.1 * x + cond["bias"].reshape(3, 1, 1), -0.2 * x - 1.0
    torch.testing.assert_close(out, u + w * (c - u), rtol=1e-6, atol=1e-6)
    if batch_cfg:  # one call of 2B: conditional half first, conditioning duplicated, other leaves kept
        assert len(model.calls) == 1
        size, mask, passed = model.calls[0]
        assert size == 6 and mask.tolist() == [True] * 3 + [False] * 3
        assert torch.equal(passed["bias"], cond["bias"].repeat(2)) and passed["extra"][0].shape == (6, 2)
        assert passed["name"] == "scene"
    else:
        assert [(s, m.tolist()) for s, m, _ in model.calls] == [(3, [True] * 3), (3, [False] * 3)]


def test_guidance_falls_back_to_two_calls_when_cond_cannot_be_stacked():
    model = StubModel()
    cond = {"bias": torch.zeros(3), "table": torch.ones(5, 2)}  # leading dim != B: not per-sample
    GuidedDenoiser(model, cond, 2.0, 3, torch.device("cpu"))(torch.randn(3, 2), torch.zeros(3, dtype=torch.long))
    assert [s for s, _, _ in model.calls] == [3, 3] and all(c is cond for _, _, c in model.calls)


@pytest.mark.parametrize("sampler", ["ddim", "dpm", "ddpm"])
def test_sampling_applies_guidance_to_the_model_output(sampler):
    d, w = make(), 2.0
    cond = stub_cond(4)
    guided = d.sample(StubModel(), (4, 2, 3), cond, generator=gen(17), sampler=sampler, steps=10, guidance=w)

    def combined(x, t, c, mask):
        b = c["bias"].reshape(-1, 1, 1)
        return (-0.2 * x - 1.0) + w * ((0.1 * x + b) - (-0.2 * x - 1.0))

    direct = d.sample(combined, (4, 2, 3), cond, generator=gen(17), sampler=sampler, steps=10, guidance=1.0)
    torch.testing.assert_close(guided, direct, rtol=1e-5, atol=1e-5)
    unguided = d.sample(StubModel(), (4, 2, 3), cond, generator=gen(17), sampler=sampler, steps=10, guidance=1.0)
    assert not torch.allclose(guided, unguided, atol=1e-3)


# ------------------------------------------------------------------------------------ determinism
@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm"])
def test_sampling_is_determined_by_the_generator(sampler):
    d = make(cond_drop_prob=0.0)
    model = StubModel()
    cond = stub_cond(2)
    kwargs = dict(sampler=sampler, steps=8, guidance=1.5)
    state = torch.get_rng_state()
    a = d.sample(model, (2, 3, 2, 4, 4), cond, generator=gen(18), **kwargs)
    b = d.sample(model, (2, 3, 2, 4, 4), cond, generator=gen(18), **kwargs)
    c = d.sample(model, (2, 3, 2, 4, 4), cond, generator=gen(19), **kwargs)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is never touched
    assert torch.equal(a, b) and not torch.allclose(a, c)
    with pytest.raises(TypeError, match="Generator"):
        d.sample(model, (2, 3), cond, generator=None)


def test_ddpm_uses_fresh_noise_each_step():
    # ancestral sampling is stochastic beyond x_T: same x_T, different generators -> different samples
    d = make()
    noise = torch.randn(2, 8, generator=gen(20))
    model = lambda x, t, c, m: torch.zeros_like(x)  # noqa: E731
    a = d.sample(model, (2, 8), generator=gen(1), sampler="ddpm", steps=10, noise=noise)
    b = d.sample(model, (2, 8), generator=gen(2), sampler="ddpm", steps=10, noise=noise)
    c = d.sample(model, (2, 8), generator=gen(2), sampler="ddim", steps=10, noise=noise)
    e = d.sample(model, (2, 8), generator=gen(3), sampler="ddim", steps=10, noise=noise)
    assert not torch.allclose(a, b) and torch.equal(c, e)


def test_ddim_eta_adds_generator_noise_and_still_recovers_a_point_mass():
    d = make(ddim_eta=1.0)
    c = torch.randn(1, 6, generator=gen(24))
    noise = torch.randn(3, 6, generator=gen(25))
    x = d.sample(point_mass_oracle(d, c), (3, 6), generator=gen(26), sampler="ddim", steps=20, noise=noise)
    torch.testing.assert_close(x, c.expand_as(x), rtol=0, atol=1e-3)
    model = lambda x, t, cc, m: torch.zeros_like(x)  # noqa: E731
    a = d.sample(model, (3, 6), generator=gen(1), sampler="ddim", steps=20, noise=noise)
    b = d.sample(model, (3, 6), generator=gen(2), sampler="ddim", steps=20, noise=noise)
    assert not torch.allclose(a, b)


def test_sample_rejects_bad_arguments():
    d = make()
    model = lambda x, t, c, m: torch.zeros_like(x)  # noqa: E731
    with pytest.raises(ValueError, match="sampler"):
        d.sample(model, (1, 2), generator=gen(), sampler="euler")
    with pytest.raises(ValueError, match="steps"):
        d.sample(model, (1, 2), generator=gen(), steps=2000)
    with pytest.raises(ValueError, match="shape"):
        d.sample(lambda x, t, c, m: x[:, :1], (1, 2), generator=gen())
    with pytest.raises(TypeError, match="tensor"):
        d.sample(lambda x, t, c, m: {"eps": x}, (1, 2), generator=gen())


# ------------------------------------------------------------------------------------ GPU
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm"])
def test_cuda_sampling_and_training(sampler):
    d = make(prediction="v").to("cuda")
    assert d.alphas_cumprod.is_cuda
    c = torch.randn(1, 4, 3, 4, 4, generator=gen(21)).cuda()
    for g in (gen(22), torch.Generator("cuda").manual_seed(22)):  # CPU or CUDA generator
        x = d.sample(point_mass_oracle(d, c), (2, 4, 3, 4, 4), generator=g, sampler=sampler, steps=20,
                     device="cuda")
        assert x.is_cuda
        torch.testing.assert_close(x, c.expand_as(x), rtol=0, atol=1e-3)
    model = StubModel()
    a = d.sample(model, (2, 3, 4), stub_cond(2) | {"bias": torch.ones(2, device="cuda")}, generator=gen(23),
                 sampler=sampler, steps=8, guidance=2.0, device="cuda")
    b = d.sample(model, (2, 3, 4), stub_cond(2) | {"bias": torch.ones(2, device="cuda")}, generator=gen(23),
                 sampler=sampler, steps=8, guidance=2.0, device="cuda")
    assert torch.equal(a, b)
    x0 = torch.randn(4, 3, 8, device="cuda")
    out = d.training_loss(lambda x, t, cc, m: as_output(d, x, t, x0), x0,
                          generator=torch.Generator("cuda").manual_seed(0))
    assert out["loss"].is_cuda and out["loss"].item() < 1e-6
