"""Flax NNX port of the Inception-v3 network that pytorch-fid uses for FID.

One file: the whole network, block by block as pytorch-fid defines it, so
that the two can be read side by side.

The structure follows pytorch-fid's `fid_inception_v3()` (itself a port of the 2015 TF
graph): torchvision's Inception3 with Mixed_5b-d = FIDInceptionA, Mixed_6b-e =
FIDInceptionC (their branch avg pools exclude padding from the average, as TF does),
Mixed_7b = FIDInceptionE_1 (same avg pool) and Mixed_7c = FIDInceptionE_2 (branch pool is
a 3x3 *max* pool). Each conv has no bias and is followed by BatchNorm (eps 1e-3, running
statistics) and ReLU. Module and attribute names equal torch's, so the weights map 1:1
(see `inception_weights.convert_state_dict`). Layout is NHWC; inference only.

Features: "pool3" = global average of Mixed_7c, [N, 2048]; optionally the 1008-way fc
logits. Inputs to `inception_features` are images [N, H, W, 3], uint8 or float in [0, 1].
Float images are first quantized to uint8 (round half up), i.e. exactly what a saved PNG
would hold, so features of in-memory samples equal features of the same samples
written to disk and read back (the pytorch-fid workflow).

Preprocessing modes (both end at [N, 299, 299, 3] float32 in [-1, 1]):
  "pytorch" (default, = pytorch-fid): x/255, bilinear resize to 299 with half-pixel
      centres and no antialiasing (torch F.interpolate(align_corners=False)), then 2x - 1.
  "tf" (= the original TF FID graph): TF1 legacy bilinear resize of the [0, 255] values
      (source coordinate = dst * in / out), then (p - 128) / 128. The network and weights
      are that graph's (pytorch-fid ported them), so only the input pipeline changes.
      Even at 299x299, where both resizes are the identity, the value maps differ
      (x / 127.5 - 1 vs. x / 128 - 1): stats from different modes are not comparable.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sparsediff_jax.metrics.fid import inception_weights

__all__ = ["InceptionV3", "quantize_uint8", "preprocess", "inception_features",
           "build_inception", "load_inception", "INPUT_SIZE", "POOL3_DIM"]

INPUT_SIZE = 299
POOL3_DIM = 2048
# Full-precision matmuls/convs on accelerators too (TPU/GPU default to bf16/tf32 passes),
# otherwise FID values drift from the float32 reference.
_PRECISION = jax.lax.Precision.HIGHEST


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


class BasicConv2d(nnx.Module):
    """conv (no bias) -> BatchNorm(eps=1e-3, running stats) -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0, *, rngs: nnx.Rngs):
        ph, pw = _pair(padding)
        self.conv = nnx.Conv(cin, cout, _pair(kernel), strides=_pair(stride),
                             padding=((ph, ph), (pw, pw)), use_bias=False,
                             precision=_PRECISION, rngs=rngs)
        self.bn = nnx.BatchNorm(cout, epsilon=1e-3, use_running_average=True, rngs=rngs)

    def __call__(self, x):
        return jax.nn.relu(self.bn(self.conv(x)))


def _max_pool(x, size: int, stride: int, pad: int = 0):
    # -inf padding: padded cells never win the max (as in torch's max_pool2d).
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, size, size, 1),
                                 (1, stride, stride, 1), ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def _avg_pool_3x3_exclude_pad(x):
    """3x3 stride-1 average with padding 1 that averages over valid cells only (TF SAME)."""
    pad = ((0, 0), (1, 1), (1, 1), (0, 0))
    window = (1, 3, 3, 1)
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, (1, 1, 1, 1), pad)
    ones = jnp.ones((1, x.shape[1], x.shape[2], 1), x.dtype)
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, (1, 1, 1, 1), pad)
    return total / count


class InceptionA(nnx.Module):
    """Mixed_5b-d (FIDInceptionA)."""

    def __init__(self, cin: int, pool_features: int, *, rngs: nnx.Rngs):
        C = functools.partial(BasicConv2d, rngs=rngs)
        self.branch1x1 = C(cin, 64, 1)
        self.branch5x5_1 = C(cin, 48, 1)
        self.branch5x5_2 = C(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = C(cin, 64, 1)
        self.branch3x3dbl_2 = C(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = C(96, 96, 3, padding=1)
        self.branch_pool = C(cin, pool_features, 1)

    def __call__(self, x):
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_3x3_exclude_pad(x))
        return jnp.concatenate([self.branch1x1(x), b5, b3, bp], axis=-1)


class InceptionB(nnx.Module):
    """Mixed_6a: grid reduction 35 -> 17."""

    def __init__(self, cin: int, *, rngs: nnx.Rngs):
        C = functools.partial(BasicConv2d, rngs=rngs)
        self.branch3x3 = C(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = C(cin, 64, 1)
        self.branch3x3dbl_2 = C(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = C(96, 96, 3, stride=2)

    def __call__(self, x):
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return jnp.concatenate([self.branch3x3(x), b3, _max_pool(x, 3, 2)], axis=-1)


class InceptionC(nnx.Module):
    """Mixed_6b-e (FIDInceptionC): factorized 7x7 convolutions."""

    def __init__(self, cin: int, c7: int, *, rngs: nnx.Rngs):
        C = functools.partial(BasicConv2d, rngs=rngs)
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        self.branch1x1 = C(cin, 192, 1)
        self.branch7x7_1 = C(cin, c7, 1)
        self.branch7x7_2 = C(c7, c7, **row)
        self.branch7x7_3 = C(c7, 192, **col)
        self.branch7x7dbl_1 = C(cin, c7, 1)
        self.branch7x7dbl_2 = C(c7, c7, **col)
        self.branch7x7dbl_3 = C(c7, c7, **row)
        self.branch7x7dbl_4 = C(c7, c7, **col)
        self.branch7x7dbl_5 = C(c7, 192, **row)
        self.branch_pool = C(cin, 192, 1)

    def __call__(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                      self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        bp = self.branch_pool(_avg_pool_3x3_exclude_pad(x))
        return jnp.concatenate([self.branch1x1(x), b7, d, bp], axis=-1)


class InceptionD(nnx.Module):
    """Mixed_7a: grid reduction 17 -> 8."""

    def __init__(self, cin: int, *, rngs: nnx.Rngs):
        C = functools.partial(BasicConv2d, rngs=rngs)
        self.branch3x3_1 = C(cin, 192, 1)
        self.branch3x3_2 = C(192, 320, 3, stride=2)
        self.branch7x7x3_1 = C(cin, 192, 1)
        self.branch7x7x3_2 = C(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = C(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = C(192, 192, 3, stride=2)

    def __call__(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for layer in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3,
                      self.branch7x7x3_4):
            b7 = layer(b7)
        return jnp.concatenate([b3, b7, _max_pool(x, 3, 2)], axis=-1)


class InceptionE(nnx.Module):
    """Mixed_7b (FIDInceptionE_1, pool="avg") and Mixed_7c (FIDInceptionE_2, pool="max")."""

    def __init__(self, cin: int, pool: str, *, rngs: nnx.Rngs):
        C = functools.partial(BasicConv2d, rngs=rngs)
        self.pool = pool
        self.branch1x1 = C(cin, 320, 1)
        self.branch3x3_1 = C(cin, 384, 1)
        self.branch3x3_2a = C(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = C(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = C(cin, 448, 1)
        self.branch3x3dbl_2 = C(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = C(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = C(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = C(cin, 192, 1)

    def __call__(self, x):
        b3 = self.branch3x3_1(x)
        b3 = jnp.concatenate([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], axis=-1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = jnp.concatenate([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], axis=-1)
        pooled = _max_pool(x, 3, 1, 1) if self.pool == "max" else _avg_pool_3x3_exclude_pad(x)
        return jnp.concatenate([self.branch1x1(x), b3, d, self.branch_pool(pooled)], axis=-1)


class InceptionV3(nnx.Module):
    """pytorch-fid's FID Inception-v3. __call__: [N, 299, 299, 3] in [-1, 1] -> pool3 [N, 2048]."""

    def __init__(self, *, rngs: nnx.Rngs):
        C = functools.partial(BasicConv2d, rngs=rngs)
        self.Conv2d_1a_3x3 = C(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = C(32, 32, 3)
        self.Conv2d_2b_3x3 = C(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = C(64, 80, 1)
        self.Conv2d_4a_3x3 = C(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32, rngs=rngs)
        self.Mixed_5c = InceptionA(256, 64, rngs=rngs)
        self.Mixed_5d = InceptionA(288, 64, rngs=rngs)
        self.Mixed_6a = InceptionB(288, rngs=rngs)
        self.Mixed_6b = InceptionC(768, 128, rngs=rngs)
        self.Mixed_6c = InceptionC(768, 160, rngs=rngs)
        self.Mixed_6d = InceptionC(768, 160, rngs=rngs)
        self.Mixed_6e = InceptionC(768, 192, rngs=rngs)
        self.Mixed_7a = InceptionD(768, rngs=rngs)
        self.Mixed_7b = InceptionE(1280, "avg", rngs=rngs)
        self.Mixed_7c = InceptionE(2048, "max", rngs=rngs)
        self.fc = nnx.Linear(POOL3_DIM, 1008, precision=_PRECISION, rngs=rngs)

    def __call__(self, x, *, with_logits: bool = False):
        """x: [N, 299, 299, 3] float in [-1, 1]. Returns pool3 [N, 2048] (and logits [N, 1008])."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = _max_pool(x, 3, 2)
        x = _max_pool(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, 2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                      self.Mixed_7c):
            x = block(x)
        pool3 = jnp.mean(x, axis=(1, 2))
        return (pool3, self.fc(pool3)) if with_logits else pool3


# ----------------------------------------------------------------------------------------
# Preprocessing.


def quantize_uint8(images) -> jax.Array:
    """uint8 images pass through; floats in [0, 1] become round-half-up(255 x), clipped."""
    images = jnp.asarray(images)
    if images.dtype == jnp.uint8:
        return images
    return jnp.floor(jnp.clip(images.astype(jnp.float32), 0.0, 1.0) * 255.0 + 0.5).astype(jnp.uint8)


def _legacy_bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights of TF1 resize_bilinear(align_corners=False, half_pixel=False).

    Source coordinate src = dst * (n_in / n_out) (computed in float32 as TF does); it
    interpolates between floor(src) and min(floor(src) + 1, n_in - 1).
    """
    scale = np.float32(n_in) / np.float32(n_out)
    src = np.arange(n_out, dtype=np.float32) * scale
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (src - lo).astype(np.float32)
    m = np.zeros((n_out, n_in), np.float32)
    np.add.at(m, (np.arange(n_out), lo), 1.0 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return m


def _resize_pytorch(x, size: tuple[int, int]):
    """x: [N, H, W, C] -> [N, size[0], size[1], C]; equals torch F.interpolate(mode="bilinear",
    align_corners=False): half-pixel centres, edge clamping, no antialias on downscaling."""
    return jax.image.resize(x, (x.shape[0], *size, x.shape[3]), "bilinear", antialias=False)


def _resize_tf_legacy(x, size: tuple[int, int]):
    """x: [N, H, W, C] float -> [N, size[0], size[1], C], separable legacy bilinear."""
    rows = jnp.asarray(_legacy_bilinear_matrix(x.shape[1], size[0]))
    cols = jnp.asarray(_legacy_bilinear_matrix(x.shape[2], size[1]))
    x = jnp.einsum("oh,nhwc->nowc", rows, x, precision=_PRECISION)
    return jnp.einsum("pw,nowc->nopc", cols, x, precision=_PRECISION)


@functools.partial(jax.jit, static_argnames=("mode",))
def preprocess(images, mode: str = "pytorch") -> jax.Array:
    """[N, H, W, 3] uint8 or float in [0, 1] -> [N, 299, 299, 3] float32 in [-1, 1].

    mode: "pytorch" (pytorch-fid) or "tf" (original TF FID graph); see module docstring.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected images [N, H, W, 3], got {images.shape}")
    x = quantize_uint8(images).astype(jnp.float32)
    if mode == "pytorch":
        return 2.0 * _resize_pytorch(x / 255.0, (INPUT_SIZE, INPUT_SIZE)) - 1.0
    if mode == "tf":
        return (_resize_tf_legacy(x, (INPUT_SIZE, INPUT_SIZE)) - 128.0) / 128.0
    raise ValueError(f"unknown preprocessing mode {mode!r} (use 'pytorch' or 'tf')")


@functools.partial(jax.jit, static_argnames=("graphdef", "with_logits"))
def _network(graphdef, state, x, with_logits: bool):
    return nnx.merge(graphdef, state)(x, with_logits=with_logits)


def inception_features(graphdef: nnx.GraphDef, state: nnx.State, images, *,
                       preprocessing: str = "pytorch", with_logits: bool = False):
    """Pure feature extraction: images [N, H, W, 3] (uint8, or float in [0, 1]) -> pool3 [N, 2048].

    `graphdef, state = nnx.split(model)`. With with_logits, returns (pool3, logits [N, 1008]).
    Preprocessing and network are compiled separately, so the network compiles once per
    batch size whatever the image size; keep the batch size fixed (pad the last batch) to
    avoid recompiling it.
    """
    return _network(graphdef, state, preprocess(jnp.asarray(images), preprocessing), with_logits)


def build_inception(params: dict[str, np.ndarray]) -> InceptionV3:
    """InceptionV3 holding `params` ({dotted path: array}, as from convert_state_dict).

    The module is created abstractly (no random init, no compute) and then filled; every
    parameter must be given with the right shape, extra entries are an error.
    """
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: InceptionV3(rngs=nnx.Rngs(0))))
    flat = nnx.to_flat_state(abstract)
    expected = {".".join(map(str, path)) for path, _ in flat}
    if missing_or_extra := expected.symmetric_difference(params):
        raise ValueError(f"parameter names differ from InceptionV3: {sorted(missing_or_extra)[:8]}")
    leaves = []
    for path, var in flat:
        name = ".".join(map(str, path))
        value = np.asarray(params[name], np.float32)
        if value.shape != var.shape:
            raise ValueError(f"{name}: shape {value.shape}, expected {var.shape}")
        leaves.append((path, var.replace(jnp.asarray(value))))
    return nnx.merge(graphdef, nnx.from_flat_state(leaves))


def load_inception(pth_path: str | os.PathLike | None = None, *, cache=None,
                   expected_sha256: str | None = inception_weights.PT_INCEPTION_SHA256
                   ) -> tuple[InceptionV3, str]:
    """pytorch-fid's FID Inception with its weights, and the weights' SHA-256.

    Downloads and caches the weights on first use; see inception_weights.load_params.
    """
    params, sha = inception_weights.load_params(pth_path, cache=cache,
                                                expected_sha256=expected_sha256)
    return build_inception(params), sha
