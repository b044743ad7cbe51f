"""Distances between a set of generated images and a set of real images, computed on feature
vectors (N, D) from any network (here: `FeatureNet.features`):

- FID: the Fréchet distance between Gaussians fitted to the two sets (Heusel et al. 2017).
- KID: the squared MMD with the cubic polynomial kernel, unbiased, averaged over random subsets
  (Bińkowski et al. 2018).
- Precision and recall: how much of the generated set falls inside the k-NN manifold of the real
  set, and how much of the real set inside that of the generated set (Kynkäänniemi et al. 2019).

All functions take numpy arrays or tensors and compute in float64."""
from __future__ import annotations

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def _as_features(features: ArrayLike, name: str = "features") -> np.ndarray:
    array = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    if array.ndim != 2 or array.shape[0] < 2:
        raise ValueError(f"{name} must be an (N, D) array with N >= 2, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} hold NaN or infinite values")
    return array.astype(np.float64)


def _check_same_dimension(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the two feature sets have different dimensions: {a.shape[1]} and {b.shape[1]}")


def gaussian_statistics(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features."""
    array = _as_features(features)
    return array.mean(axis=0), np.cov(array, rowvar=False)


def _symmetric_square_root(matrix: np.ndarray) -> np.ndarray:
    """The PSD square root of a symmetric PSD matrix (negative rounding-error eigenvalues set to 0)."""
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T


def frechet_distance(mean_a: np.ndarray, covariance_a: np.ndarray, mean_b: np.ndarray,
                     covariance_b: np.ndarray) -> float:
    """Fréchet (2-Wasserstein) distance between N(mean_a, covariance_a) and N(mean_b, covariance_b)
    (Dowson & Landau 1982; Heusel et al. 2017, Eq. 6):
        d^2 = |mean_a - mean_b|^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2)).
    Tr((C_a C_b)^(1/2)) is computed as Tr((C_a^(1/2) C_b C_a^(1/2))^(1/2)): the two matrices are
    similar, and the second is symmetric PSD, so its eigenvalues are real and >= 0 (no complex
    square roots, also for the singular covariances of sets smaller than the dimension)."""
    mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
    covariance_a, covariance_b = np.asarray(covariance_a, np.float64), np.asarray(covariance_b, np.float64)
    if mean_a.shape != mean_b.shape or covariance_a.shape != covariance_b.shape or \
            covariance_a.shape != (mean_a.size, mean_a.size):
        raise ValueError(f"mismatched Gaussian statistics: means {mean_a.shape} and {mean_b.shape}, "
                         f"covariances {covariance_a.shape} and {covariance_b.shape}")
    root_a = _symmetric_square_root(covariance_a)
    product = root_a @ covariance_b @ root_a
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((product + product.T) / 2), 0, None)).sum()
    distance = np.sum((mean_a - mean_b) ** 2) + np.trace(covariance_a) + np.trace(covariance_b) - 2 * trace_root
    return float(max(distance, 0.0))


def fid(features_a: ArrayLike, features_b: ArrayLike) -> float:
    """FID of two feature sets (the Fréchet distance of their fitted Gaussians). It is biased upward
    for small sets: compare figures only at equal set sizes (as the real-vs-real floor does)."""
    a, b = _as_features(features_a, "features_a"), _as_features(features_b, "features_b")
    _check_same_dimension(a, b)
    return frechet_distance(*gaussian_statistics(a), *gaussian_statistics(b))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x . y / D + 1)^3, the kernel of KID (Bińkowski et al. 2018, Sec. 4)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd_squared_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased estimate of MMD^2 (Gretton et al. 2012, Lemma 6) with the polynomial kernel:
    mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j)."""
    m, n = len(x), len(y)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2 * k_xy.mean())


def kid(features_a: ArrayLike, features_b: ArrayLike, subset_size: int = 1000, subsets: int = 100,
        seed: int = 0) -> tuple[float, float]:
    """KID: mean and standard deviation of the unbiased MMD^2 over `subsets` random subsets of
    min(subset_size, N_a, N_b) features drawn without replacement from each set. Unbiased, so it
    can be slightly negative when the sets come from one distribution."""
    a, b = _as_features(features_a, "features_a"), _as_features(features_b, "features_b")
    _check_same_dimension(a, b)
    size = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    values = [mmd_squared_unbiased(a[rng.choice(len(a), size, replace=False)],
                                   b[rng.choice(len(b), size, replace=False)]) for _ in range(subsets)]
    return float(np.mean(values)), float(np.std(values))


def _pairwise_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    squared = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T
    return np.sqrt(np.clip(squared, 0, None))


def _knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Distance from each vector to its k-th nearest neighbour in its own set (itself excluded)."""
    distances = _pairwise_distances(features, features)
    np.fill_diagonal(distances, np.inf)
    return np.partition(distances, k - 1, axis=1)[:, k - 1]


def precision_recall(real_features: ArrayLike, generated_features: ArrayLike, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019, Eq. 1-2): the manifold of a set is
    the union of balls around its vectors, each with the radius of its k-th nearest neighbour.
    precision = fraction of generated vectors inside the real manifold (fidelity);
    recall = fraction of real vectors inside the generated manifold (coverage). A point on a
    ball's boundary counts as inside."""
    real = _as_features(real_features, "real_features")
    generated = _as_features(generated_features, "generated_features")
    _check_same_dimension(real, generated)
    if not 1 <= k < min(len(real), len(generated)):
        raise ValueError(f"k must be between 1 and the smaller set size - 1, got k={k} for sets of "
                         f"{len(real)} and {len(generated)}")
    real_radii, generated_radii = _knn_radii(real, k), _knn_radii(generated, k)
    distances = _pairwise_distances(generated, real)  # (N_generated, N_real)
    precision = (distances <= real_radii[None, :]).any(axis=1).mean()
    recall = (distances <= generated_radii[:, None]).any(axis=0).mean()
    return float(precision), float(recall)
