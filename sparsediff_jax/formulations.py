"""Diffusion formulations behind one small interface.

A formulation says how a clean image x0 becomes a training pair, and how a sampler turns
the network's output into an ODE drift. Time `t` runs from the data end (small) to the
noise end (large) in each formulation's own units:

- `FlowMatching`: linear path x_t = (1 - t) x0 + t eps, t in [0, 1]; the net predicts the
  velocity eps - x0. The paper's baseline.
- `DDPMEps`: variance-preserving x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, continuous t,
  linear or cosine schedule; the net predicts eps.
- `EDM`: x = x0 + sigma n with t = sigma (Karras et al. 2022): log-normal sigma,
  preconditioning c_in/c_skip/c_out/c_noise; the net predicts the scaled residual F.

Every formulation returns training pairs in the space the raw network output lives in,
so the training step and `masking.masked_mse` are the same for all three.
All methods are pure functions of their arguments.
"""

import dataclasses
import math
from typing import ClassVar, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from sparsediff_jax import registry


class TrainingPair(NamedTuple):
  net_input: jax.Array   # [B, H, W, C] what the network sees.
  cond: jax.Array        # [B] noise-level conditioning fed to the network.
  target: jax.Array      # [B, H, W, C] what the raw network output regresses to.
  weight: jax.Array | None  # [B] per-example loss weight, or None for uniform.
  # [B] noise level in [0, 1): sigma / (1 + sigma) with sigma the noise-to-signal ratio of
  # Karras et al. (so flow matching's t itself); 0 = clean data, towards 1 = pure noise.
  # What a mask strategy may depend on (masking.py).
  level: jax.Array | None = None


class Formulation(Protocol):
  name: ClassVar[str]    # its config name (diffusion.formulation).
  ends_at_zero: bool     # the sampler's last time is exactly 0 (no final denoising call).

  def training_pair(self, key: jax.Array, x0: jax.Array) -> TrainingPair: ...
  def net_inputs(self, x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]: ...
  def drift(self, net_out: jax.Array, x: jax.Array, t: jax.Array) -> jax.Array: ...
  def denoised(self, net_out: jax.Array, x: jax.Array, t: jax.Array) -> jax.Array: ...
  def time_grid(self, num_steps: int) -> jax.Array: ...
  def prior_std(self) -> float: ...
  # Noise-to-signal view x = scale(t) (x0 + sigma(t) n) of Karras et al. (2022), used by
  # samplers for time grids spaced in sigma and for the noise level at a grid's start.
  def sigma(self, t: jax.Array) -> jax.Array: ...
  def t_from_sigma(self, sigma: jax.Array) -> jax.Array: ...
  def noise_std(self, t: jax.Array) -> jax.Array: ...


class VariancePreserving(Formulation, Protocol):
  """A formulation with x_t = sqrt(abar(t)) x0 + sqrt(1 - abar(t)) eps: what DDIM and
  DDPM ancestral sampling need besides the drift."""

  def log_alpha_bar(self, t: jax.Array) -> jax.Array: ...


def noise_level(sigma: jax.Array) -> jax.Array:
  """sigma / (1 + sigma) in [0, 1]: the mask strategies' common noise-level axis."""
  return sigma / (1.0 + sigma)


def _bcast(t: jax.Array, x: jax.Array) -> jax.Array:
  """[B] -> [B, 1, 1, 1] so a per-example scalar scales an image batch."""
  return jnp.reshape(t, (-1,) + (1,) * (x.ndim - 1))


@dataclasses.dataclass(frozen=True)
class FlowMatching:
  """Rectified-flow / flow-matching with velocity prediction."""
  name: ClassVar[str] = 'flow_matching'
  time_sampling: str = 'uniform'   # 'uniform' or 'logit_normal'
  ends_at_zero: bool = True

  def training_pair(self, key, x0):
    kt, kn = jax.random.split(key)
    b = x0.shape[0]
    if self.time_sampling == 'logit_normal':
      t = jax.nn.sigmoid(jax.random.normal(kt, (b,)))
    else:
      t = jax.random.uniform(kt, (b,))
    eps = jax.random.normal(kn, x0.shape)
    tb = _bcast(t, x0)
    x_t = (1.0 - tb) * x0 + tb * eps
    return TrainingPair(x_t, t, eps - x0, None, t)

  def net_inputs(self, x, t):
    return x, t

  def drift(self, net_out, x, t):
    return net_out

  def denoised(self, net_out, x, t):
    return x - _bcast(t, x) * net_out

  def time_grid(self, num_steps):
    return jnp.linspace(1.0, 0.0, num_steps + 1)

  def prior_std(self):
    return 1.0

  def sigma(self, t):
    return t / (1.0 - t)   # inf at t = 1

  def t_from_sigma(self, sigma):
    return sigma / (1.0 + sigma)

  def noise_std(self, t):
    return t


@dataclasses.dataclass(frozen=True)
class DDPMEps:
  """Variance-preserving diffusion with epsilon prediction (continuous time)."""
  name: ClassVar[str] = 'ddpm_eps'
  schedule: str = 'linear'   # 'linear' (beta 0.1 -> 20) or 'cosine' (Nichol & Dhariwal)
  t_min: float = 1e-3        # smallest time used in training and sampling
  beta_min: float = 0.1
  beta_max: float = 20.0
  cosine_s: float = 0.008
  ends_at_zero: bool = False

  @property
  def t_max(self) -> float:
    # The cosine schedule's abar reaches 0 at t = 1, where the drift is infinite.
    return 1.0 if self.schedule == 'linear' else 0.995

  def log_alpha_bar(self, t):
    if self.schedule == 'linear':
      return -0.5 * t**2 * (self.beta_max - self.beta_min) - t * self.beta_min
    s = self.cosine_s
    angle = lambda u: (u + s) / (1.0 + s) * (math.pi / 2)
    return 2.0 * (jnp.log(jnp.cos(angle(t))) - math.log(math.cos(angle(0.0))))

  def beta(self, t):
    """beta(t) = -d log(abar)/dt."""
    if self.schedule == 'linear':
      return self.beta_min + t * (self.beta_max - self.beta_min)
    s = self.cosine_s
    return math.pi / (1.0 + s) * jnp.tan((t + s) / (1.0 + s) * (math.pi / 2))

  def training_pair(self, key, x0):
    kt, kn = jax.random.split(key)
    t = jax.random.uniform(kt, (x0.shape[0],), minval=self.t_min, maxval=self.t_max)
    eps = jax.random.normal(kn, x0.shape)
    abar = _bcast(jnp.exp(self.log_alpha_bar(t)), x0)
    x_t = jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * eps
    return TrainingPair(x_t, t, eps, None, noise_level(self.sigma(t)))

  def net_inputs(self, x, t):
    return x, t

  def drift(self, net_out, x, t):
    # Probability-flow ODE of the VP SDE with score = -eps / sigma_t.
    abar = jnp.exp(self.log_alpha_bar(t))
    beta, sigma = _bcast(self.beta(t), x), _bcast(jnp.sqrt(1.0 - abar), x)
    return -0.5 * beta * (x - net_out / sigma)

  def denoised(self, net_out, x, t):
    abar = _bcast(jnp.exp(self.log_alpha_bar(t)), x)
    return (x - jnp.sqrt(1.0 - abar) * net_out) / jnp.sqrt(abar)

  def time_grid(self, num_steps):
    return jnp.linspace(self.t_max, self.t_min, num_steps + 1)

  def prior_std(self):
    return 1.0

  def sigma(self, t):
    return jnp.sqrt(jnp.expm1(-self.log_alpha_bar(t)))

  def t_from_sigma(self, sigma):
    """Inverse of `sigma`, clipped to the schedule's [t_min, t_max]."""
    neg_log_abar = jnp.log1p(jnp.square(sigma))
    if self.schedule == 'linear':
      a, b = 0.5 * (self.beta_max - self.beta_min), self.beta_min
      t = 2.0 * neg_log_abar / (b + jnp.sqrt(b * b + 4.0 * a * neg_log_abar))
    else:
      s = self.cosine_s
      cos_t = math.cos(s / (1.0 + s) * math.pi / 2) * jnp.exp(-0.5 * neg_log_abar)
      t = jnp.arccos(cos_t) * 2.0 * (1.0 + s) / math.pi - s
    return jnp.clip(t, self.t_min, self.t_max)

  def noise_std(self, t):
    return jnp.sqrt(-jnp.expm1(self.log_alpha_bar(t)))


@dataclasses.dataclass(frozen=True)
class EDM:
  """Karras et al. (2022): sigma parameterisation with preconditioning."""
  name: ClassVar[str] = 'edm'
  sigma_data: float = 0.5
  p_mean: float = -1.2
  p_std: float = 1.2
  sigma_min: float = 0.002
  sigma_max: float = 80.0
  rho: float = 7.0
  ends_at_zero: bool = True

  def _precond(self, sigma):
    sd2 = self.sigma_data**2
    c_skip = sd2 / (sigma**2 + sd2)
    c_out = sigma * self.sigma_data / jnp.sqrt(sigma**2 + sd2)
    c_in = 1.0 / jnp.sqrt(sigma**2 + sd2)
    return c_skip, c_out, c_in

  def training_pair(self, key, x0):
    ks, kn = jax.random.split(key)
    sigma = jnp.exp(self.p_mean + self.p_std * jax.random.normal(ks, (x0.shape[0],)))
    x = x0 + _bcast(sigma, x0) * jax.random.normal(kn, x0.shape)
    c_skip, c_out, _ = (_bcast(a, x0) for a in self._precond(sigma))
    # EDM's loss lambda(sigma) |D - x0|^2 with D = c_skip x + c_out F equals
    # |F - (x0 - c_skip x) / c_out|^2 because lambda c_out^2 = 1: uniform weight in F space.
    net_input, cond = self.net_inputs(x, sigma)
    return TrainingPair(net_input, cond, (x0 - c_skip * x) / c_out, None, noise_level(sigma))

  def net_inputs(self, x, t):
    _, _, c_in = self._precond(t)
    return _bcast(c_in, x) * x, jnp.log(t) / 4.0

  def denoised(self, net_out, x, t):
    c_skip, c_out, _ = (_bcast(a, x) for a in self._precond(t))
    return c_skip * x + c_out * net_out

  def drift(self, net_out, x, t):
    return (x - self.denoised(net_out, x, t)) / _bcast(t, x)

  def time_grid(self, num_steps):
    i = jnp.arange(num_steps) / max(num_steps - 1, 1)
    inv_rho = 1.0 / self.rho
    sig = (self.sigma_max**inv_rho + i * (self.sigma_min**inv_rho - self.sigma_max**inv_rho))
    return jnp.concatenate([sig**self.rho, jnp.zeros(1)])

  def prior_std(self):
    return self.sigma_max

  def sigma(self, t):
    return t

  def t_from_sigma(self, sigma):
    return sigma

  def noise_std(self, t):
    return t


# Each entry builds its formulation from the config.diffusion block (its fields are checked
# by entry_checks, named in registry.py).
registry.FORMULATIONS.register('flow_matching')(
    lambda d: FlowMatching(time_sampling=d.time_sampling))
registry.FORMULATIONS.register('ddpm_eps')(
    lambda d: DDPMEps(schedule=d.ddpm_schedule))
registry.FORMULATIONS.register('edm')(
    lambda d: EDM(sigma_data=d.edm_sigma_data, p_mean=d.edm_p_mean, p_std=d.edm_p_std))


def get_formulation(cfg) -> Formulation:
  """Builds the formulation named by `cfg.formulation` (a `config.diffusion` block)."""
  return registry.FORMULATIONS.get(cfg.formulation)(cfg)
