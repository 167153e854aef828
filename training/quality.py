"""Sample quality in the feature space of a classifier the project trains itself (training/classifier.py):
pure functions of feature and probability arrays.

- Frechet distance (FID, Heusel et al. 2017): ||m_a - m_b||^2 + tr(C_a + C_b - 2 (C_a^1/2 C_b C_a^1/2)^1/2)
  between Gaussians fitted to two feature sets; 0 for identical sets, smaller is better.
- Precision and recall (Kynkaenniemi et al. 2019): each set's manifold is the union of balls around its points
  reaching their k-th nearest neighbour in the set; precision is the share of generated points inside the real
  manifold (are samples realistic?), recall the share of real points inside the generated one (is the data
  covered?).
- Confident share: the share of images the classifier gives one class with probability above a threshold (a
  ghosted overlay of two garments gets none).
"""

from __future__ import annotations

import numpy as np


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID of features a (N, F) and b (M, F), in float64. tr((C_a^1/2 C_b C_a^1/2)^1/2) from the eigenvalues of
    that symmetric matrix (equal to tr((C_a C_b)^1/2)), with no general matrix square root."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))  # (F, F)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T  # C_a^1/2
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = float(np.sum(np.sqrt(np.clip(middle, 0, None))))
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) squared Euclidean distances, float64."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return np.maximum((a**2).sum(1)[:, None] + (b**2).sum(1)[None] - 2 * a @ b.T, 0.0)


def kth_neighbour_radii(points: np.ndarray, k: int, block: int = 1000) -> np.ndarray:
    """(N,) squared distance of each point to its k-th nearest other point of the set, computed in blocks of
    rows so memory stays (block, N)."""
    radii = np.empty(len(points))
    for start in range(0, len(points), block):
        d = squared_distances(points[start : start + block], points)
        radii[start : start + block] = np.partition(d, k, axis=1)[:, k]  # column 0 is the point itself
    return radii


def coverage(queries: np.ndarray, points: np.ndarray, radii: np.ndarray, block: int = 1000) -> float:
    """The share of queries inside at least one ball (points[j], radii[j]) (squared radii)."""
    inside = 0
    for start in range(0, len(queries), block):
        d = squared_distances(queries[start : start + block], points)
        inside += int(np.sum(np.any(d <= radii[None], axis=1)))
    return inside / len(queries)


def precision_recall(real: np.ndarray, generated: np.ndarray, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of generated features against real ones, k-nearest-neighbour manifolds."""
    precision = coverage(generated, real, kth_neighbour_radii(real, k))
    recall = coverage(real, generated, kth_neighbour_radii(generated, k))
    return precision, recall


def confident_share(probabilities: np.ndarray, threshold: float = 0.9) -> float:
    """The share of rows (N, classes) whose largest class probability is above the threshold."""
    return float(np.mean(probabilities.max(1) > threshold))
