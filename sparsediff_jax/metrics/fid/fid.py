"""Sample-quality metrics on Inception features: FID, KID, precision/recall.

One file: the three metrics share the feature statistics and their
reference-file format.

Everything here is NumPy/SciPy in float64 and independent of the network: inputs are
feature matrices of shape [N, D] (D = 2048 for the pool3 features of
`sparsediff_jax.metrics.fid.inception`).

* `FeatureAccumulator` streams features batch by batch into a running mean and a running
  centred scatter matrix (Chan et al.'s pairwise update), so 50k samples never need to be
  held in memory and the last partial batch counts like any other.
* `frechet_distance` is the FID formula with covariance estimated with ddof=1.
* `kernel_inception_distance` is the unbiased polynomial-kernel MMD^2 over random subsets.
* `precision_recall` is the k-NN manifold estimate of Kynkaanniemi et al. (2019), computed
  in blocks so memory is bounded by `block_size**2` distances.
* `save_stats` / `load_stats` store reference statistics with the metadata that decides
  whether two sets of statistics may be compared at all (`check_compatible`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from typing import NamedTuple

import numpy as np
from sparsediff_jax.runtime import atomic_io
from sparsediff_jax import errors
from sparsediff_jax.metrics.fid import sqrtm

__all__ = [
    "FeatureStats",
    "FeatureAccumulator",
    "feature_stats",
    "frechet_distance",
    "fid_from_stats",
    "kernel_inception_distance",
    "precision_recall",
    "StatsMetadata",
    "StatsMismatchError",
    "SqrtmTimeoutError",
    "check_compatible",
    "save_stats",
    "load_stats",
    "load_features",
]


class FeatureStats(NamedTuple):
    """Gaussian summary of a feature set.

    mu: [D] float64 mean; sigma: [D, D] float64 covariance (ddof=1); count: samples used.
    """

    mu: np.ndarray
    sigma: np.ndarray
    count: int


class FeatureAccumulator:
    """Running mean and covariance of [N, D] feature batches, in float64.

    Keeps only the mean [D] and the centred scatter matrix sum (x - mean)(x - mean)^T
    [D, D]; batches are folded in with the pairwise (Chan et al. 1979) update, which
    stays accurate when the features have a large common offset (unlike E[xx^T] - mm^T).
    """

    def __init__(self, dim: int):
        self.dim = int(dim)
        self.count = 0
        self.mean = np.zeros(self.dim, np.float64)
        self.scatter = np.zeros((self.dim, self.dim), np.float64)

    def _combine(self, count: int, mean: np.ndarray, scatter: np.ndarray) -> None:
        if count == 0:
            return
        total = self.count + count
        delta = mean - self.mean
        self.scatter += scatter + np.outer(delta, delta) * (self.count * count / total)
        self.mean += delta * (count / total)
        self.count = total

    def update(self, features) -> "FeatureAccumulator":
        """Adds a batch of features [B, D] (any float dtype; B may be 0). Returns self."""
        x = np.asarray(features, np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected features of shape [B, {self.dim}], got {x.shape}")
        if x.shape[0] == 0:
            return self
        batch_mean = x.mean(axis=0)
        centred = x - batch_mean
        self._combine(x.shape[0], batch_mean, centred.T @ centred)
        return self

    def merge(self, other: "FeatureAccumulator") -> "FeatureAccumulator":
        """Folds another accumulator (e.g. from another host or shard) into this one."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge accumulators of dimension {self.dim} and {other.dim}")
        self._combine(other.count, other.mean, other.scatter)
        return self

    def finalize(self) -> FeatureStats:
        """Returns mean [D], covariance [D, D] with ddof=1, and the sample count."""
        if self.count < 2:
            raise ValueError(
                f"need at least 2 samples for a covariance (ddof=1), got {self.count}")
        return FeatureStats(self.mean.copy(), self.scatter / (self.count - 1), self.count)


def feature_stats(features) -> FeatureStats:
    """FeatureStats of an in-memory feature matrix [N, D]."""
    x = np.asarray(features)
    return FeatureAccumulator(x.shape[-1]).update(x).finalize()


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    d^2 = ||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr(sqrt(sigma1 sigma2)).

    Args:
      mu1, mu2: [D] means. sigma1, sigma2: [D, D] covariances.
      eps: when the square root of sigma1 sigma2 is not finite, has a non-negligible
        imaginary part or a large residual (singular covariances, typically fewer samples
        than dimensions), it is recomputed with eps * I added to both covariances.
    Raises:
      ValueError: on shape mismatches, or if even the offset square root fails.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            "mismatched statistics: mu1 %s, sigma1 %s, mu2 %s, sigma2 %s (expected [D] and [D, D] "
            "with the same D; were both computed with the same feature layer?)"
            % (mu1.shape, sigma1.shape, mu2.shape, sigma2.shape))
    for name, x in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.all(np.isfinite(x)):   # scipy's square root never returns on a NaN
            raise ValueError(f"{name} holds NaN or inf values ({np.sum(~np.isfinite(x))} of "
                             f"{x.size})")

    trace_sqrt, residual = _bounded_sqrtm_trace(sigma1 @ sigma2)
    if not np.isfinite(trace_sqrt) or residual > 1e-5:
        offset = eps * np.eye(d)
        trace_sqrt, residual = _bounded_sqrtm_trace((sigma1 + offset) @ (sigma2 + offset))
        if not np.isfinite(trace_sqrt):
            raise ValueError("matrix square root of sigma1 @ sigma2 failed even with eps * I added")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


class SqrtmTimeoutError(errors.RunFailedError):
    """The matrix square root of the FID did not finish within its time limit."""


def _bounded_sqrtm_trace(product: np.ndarray) -> tuple[float, float]:
    try:
        return sqrtm.bounded_sqrtm_trace(product)
    except sqrtm.SqrtmTimeout as e:
        raise SqrtmTimeoutError(
            f"{e} (the limit: ${sqrtm.TIMEOUT_ENV}, now {sqrtm.timeout_seconds():g} s); the "
            "statistics may be ill-conditioned: check them, or raise the limit") from None


def fid_from_stats(a: FeatureStats, b: FeatureStats, eps: float = 1e-6) -> float:
    """FID between two FeatureStats; warns when a covariance is necessarily singular.

    With N samples the covariance has rank <= N - 1, so below D + 1 samples (2049 for
    pool3) FID is biased and its square root ill-conditioned; 50k samples are standard.
    """
    for name, s in (("first", a), ("second", b)):
        if s.count <= s.mu.shape[0]:
            warnings.warn(
                f"FID from {s.count} samples in the {name} set: fewer than feature dimension + 1 "
                f"({s.mu.shape[0] + 1}); the covariance is singular and the value is strongly "
                "biased (use >= 10k, ideally 50k samples)", stacklevel=2)
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma, eps=eps)


def kernel_inception_distance(
    features1, features2, *, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID: unbiased MMD^2 with the kernel k(x, y) = (x.y / D + 1)^3 (Binkowski et al. 2018).

    Args:
      features1: [N1, D]; features2: [N2, D].
      num_subsets: number of random subset pairs (drawn without replacement within a subset).
      subset_size: m, clipped to min(N1, N2); must be >= 2.
    Returns:
      (mean, std) of MMD^2 over the subsets (std with ddof=0, as commonly reported).
    """
    x_all = np.asarray(features1, np.float64)
    y_all = np.asarray(features2, np.float64)
    if x_all.shape[1] != y_all.shape[1]:
        raise ValueError(f"feature dimensions differ: {x_all.shape[1]} vs {y_all.shape[1]}")
    d = x_all.shape[1]
    m = min(subset_size, x_all.shape[0], y_all.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got subset size {m}")
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)
    for i in range(num_subsets):
        x = x_all[rng.choice(x_all.shape[0], m, replace=False)]
        y = y_all[rng.choice(y_all.shape[0], m, replace=False)]
        kxx = (x @ x.T / d + 1.0) ** 3
        kyy = (y @ y.T / d + 1.0) ** 3
        kxy = (x @ y.T / d + 1.0) ** 3
        # Unbiased: the diagonal k(x_i, x_i) terms are excluded from the within-set means.
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values[i] = within - 2.0 * kxy.mean()
    return float(values.mean()), float(values.std())


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances [len(a), len(b)], clipped at 0 against rounding."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


def _knn_radii_sq(x: np.ndarray, k: int, block: int) -> np.ndarray:
    """Squared distance of each row of x to its k-th nearest other row, [N].

    The row itself is at distance 0 and is among the k + 1 smallest, so the k-th
    neighbour is the (k + 1)-th smallest; blocks over both axes keep a running top-(k+1).
    """
    n = x.shape[0]
    if n <= k:
        raise ValueError(f"need more than k={k} samples to build a k-NN manifold, got {n}")
    radii = np.empty(n)
    for r0 in range(0, n, block):
        rows = x[r0:r0 + block]
        best = np.full((rows.shape[0], 0), np.inf)
        for c0 in range(0, n, block):
            cand = np.concatenate([best, _sq_dists(rows, x[c0:c0 + block])], axis=1)
            keep = min(k + 1, cand.shape[1])
            best = np.partition(cand, keep - 1, axis=1)[:, :keep]
        radii[r0:r0 + block] = best.max(axis=1)
    return radii


def _coverage(manifold: np.ndarray, radii_sq: np.ndarray, queries: np.ndarray, block: int) -> float:
    """Fraction of query rows inside at least one ball (manifold_i, radius_i)."""
    inside = np.zeros(queries.shape[0], bool)
    for q0 in range(0, queries.shape[0], block):
        q = queries[q0:q0 + block]
        hit = np.zeros(q.shape[0], bool)
        for m0 in range(0, manifold.shape[0], block):
            d = _sq_dists(q, manifold[m0:m0 + block])
            hit |= (d <= radii_sq[None, m0:m0 + block]).any(axis=1)
        inside[q0:q0 + block] = hit
    return float(inside.mean())


def precision_recall(real, fake, *, k: int = 3, block_size: int = 1024) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019).

    Precision: fraction of fake samples inside the real manifold (union of balls around
    each real sample with radius = distance to its k-th nearest real neighbour). Recall:
    fraction of real samples inside the fake manifold, built the same way.

    Args:
      real: [N1, D]; fake: [N2, D] features. k: neighbourhood size (3 in the paper).
      block_size: rows/columns per distance block; memory is O(block_size**2).
    Returns:
      (precision, recall), each in [0, 1].
    """
    real = np.asarray(real, np.float64)
    fake = np.asarray(fake, np.float64)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: {real.shape[1]} vs {fake.shape[1]}")
    real_radii = _knn_radii_sq(real, k, block_size)
    fake_radii = _knn_radii_sq(fake, k, block_size)
    precision = _coverage(real, real_radii, fake, block_size)
    recall = _coverage(fake, fake_radii, real, block_size)
    return precision, recall


# ----------------------------------------------------------------------------------------
# Reference statistics on disk.


@dataclasses.dataclass(frozen=True)
class StatsMetadata:
    """What a set of statistics was computed from.

    dataset/split: e.g. "celeb_a"/"train" (for generated samples: the dataset the model was
    trained on and "generated"). resolution: image side in pixels before the Inception
    resize. num_images: samples in the statistics. preprocessing: "pytorch" or "tf".
    weights_sha256: SHA-256 of the Inception weights file.
    """

    dataset: str
    split: str
    resolution: int
    num_images: int
    preprocessing: str
    weights_sha256: str


# Fields that must agree for two statistics to be comparable: the same network, input
# pipeline and image size. Dataset and split differ on purpose (reference vs. generated).
COMPARABLE_FIELDS = ("resolution", "preprocessing", "weights_sha256")


# Two sets of statistics were computed under incompatible settings.
StatsMismatchError = errors.StatsMismatchError


def check_compatible(a: StatsMetadata, b: StatsMetadata, fields=COMPARABLE_FIELDS) -> None:
    """Raises StatsMismatchError naming the first field in `fields` where a and b differ."""
    for field in fields:
        va, vb = getattr(a, field), getattr(b, field)
        if va != vb:
            raise StatsMismatchError(
                f"statistics are not comparable: field '{field}' differs ({va!r} vs {vb!r}); "
                'compute the reference statistics with the same Inception weights, '
                'preprocessing and resolution')


def save_stats(path: str | os.PathLike, stats: FeatureStats, metadata: StatsMetadata,
               features: np.ndarray | None = None) -> None:
    """Writes mu, sigma, count and JSON metadata to an .npz (loadable without pickle),
    atomically, on local disk or gs://.

    features: optionally a subset of the feature rows [K, D] (stored as float32), for the
    metrics that need samples rather than moments (precision/recall, KID).
    """
    if metadata.num_images != stats.count:
        raise ValueError(
            f"metadata.num_images={metadata.num_images} but the statistics have {stats.count} samples")
    extra = {} if features is None else {"features": np.asarray(features, np.float32)}
    atomic_io.save_npz(path, mu=stats.mu, sigma=stats.sigma, count=np.int64(stats.count),
             metadata=np.array(json.dumps(dataclasses.asdict(metadata))), **extra)


def load_stats(path: str | os.PathLike) -> tuple[FeatureStats, StatsMetadata]:
    """Reads statistics written by save_stats."""
    with _open_npz(path) as f:
        stats = FeatureStats(f["mu"].astype(np.float64), f["sigma"].astype(np.float64),
                             int(f["count"]))
        metadata = StatsMetadata(**json.loads(str(f["metadata"])))
    return stats, metadata


def load_features(path: str | os.PathLike) -> np.ndarray | None:
    """The feature subset [K, D] float32 stored by save_stats, or None if it stored none."""
    with _open_npz(path) as f:
        return f["features"] if "features" in f.files else None


def _open_npz(path: str | os.PathLike):
    """np.load of a local or gs:// .npz, without pickle."""
    if not atomic_io.is_remote(path):
        return np.load(path, allow_pickle=False)
    import io
    return np.load(io.BytesIO(atomic_io.read_bytes(path, missing=b"")), allow_pickle=False)
