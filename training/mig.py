"""The Mutual Information Gap (MIG), a disentanglement score of codes against known generating factors.

Source: Chen, Li, Grosse & Duvenaud (2018), "Isolating Sources of Disentanglement in Variational
Autoencoders", section 4. For factors v_k (k = 1..K) and code dimensions z_j (j = 1..D):

    MIG = 1/K' sum_k  ( I(z_{j(1)}; v_k) - I(z_{j(2)}; v_k) ) / H(v_k)

where j(1), j(2) are the code dimensions with the largest and second-largest mutual information with v_k,
and the sum runs over the K' factors that vary. Each term lies in [0, 1]: 1 when one dimension alone
captures the factor and no other dimension carries any of it, 0 when the factor's information is spread
equally over two or more dimensions (or absent).

Estimator (the usual one, as in Locatello et al.'s disentanglement_lib, on encoder means): each code
dimension is cut into `bins` equal-width bins between its minimum and maximum, and the discrete mutual
information comes from the joint counts n_ab of (code bin a, factor value b) over N samples, in nats:

    I(z; v) = sum_ab p_ab log(p_ab / (p_a p_b)),  p_ab = n_ab / N,  with 0 log 0 = 0
    H(v)    = -sum_b p_b log p_b

The histogram estimate is biased upwards by about (bins - 1)(values - 1) / (2N) nats, so N should be large
(thousands) for an independent code to score near 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class MIGResult:
    mig: float  # mean of per_factor over the factors that vary
    per_factor: np.ndarray  # (K,) normalised gap of each factor; NaN for a constant factor
    mutual_info: np.ndarray  # (D, K) I(z_j; v_k) in nats
    factor_entropy: np.ndarray  # (K,) H(v_k) in nats


def mutual_information_gap(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> MIGResult:
    """MIG of codes (N, D) float against factors (N, K) int, each code dimension cut into `bins` bins."""
    codes, factors = np.asarray(codes, dtype=np.float64), np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise ValueError(f"codes (N, D) and factors (N, K) must share N, got {codes.shape} and {factors.shape}")
    if not np.issubdtype(factors.dtype, np.integer):
        raise ValueError(f"factors must be integers, got {factors.dtype}")
    if codes.shape[1] < 2:
        raise ValueError(f"MIG compares the two most informative code dimensions; D = {codes.shape[1]}")
    if len(codes) == 0 or not np.isfinite(codes).all():
        raise ValueError("codes must be non-empty and finite")
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")

    code_bins = [discretize(codes[:, j], bins) for j in range(codes.shape[1])]  # D arrays (N,) in [0, bins)
    # Factor values may be any integers: np.unique maps them to 0..values-1.
    factor_ids = [np.unique(factors[:, k], return_inverse=True)[1].ravel() for k in range(factors.shape[1])]
    mutual_info = np.array([[discrete_mutual_info(a, b) for b in factor_ids] for a in code_bins])  # (D, K)
    factor_entropy = np.array([discrete_entropy(b) for b in factor_ids])  # (K,)

    # A factor with a single value has H = 0 and I = 0 with every code dimension: its gap is 0 / 0, and it
    # says nothing about disentanglement, so it is left out of the mean (NaN in per_factor).
    varies = factor_entropy > 0
    if not varies.any():
        raise ValueError("every factor is constant: MIG is undefined")
    top2 = -np.sort(-mutual_info, axis=0)[:2]  # (2, K): largest and second-largest I over code dimensions
    per_factor = np.full(factors.shape[1], np.nan)
    per_factor[varies] = (top2[0, varies] - top2[1, varies]) / factor_entropy[varies]
    return MIGResult(float(per_factor[varies].mean()), per_factor, mutual_info, factor_entropy)


def discretize(values: np.ndarray, bins: int) -> np.ndarray:
    """(N,) floats -> (N,) int bin indices in [0, bins), equal-width bins over [min, max].

    The maximum goes into the last bin (closed on the right, like np.histogram); a constant input falls
    into bin 0.
    """
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(len(values), dtype=np.int64)
    index = np.floor((values - lo) / (hi - lo) * bins).astype(np.int64)
    return np.minimum(index, bins - 1)


def discrete_mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) in nats of two (N,) arrays of non-negative int labels, from their joint counts."""
    joint = np.bincount(a * (b.max() + 1) + b, minlength=(a.max() + 1) * (b.max() + 1))
    p_ab = joint.reshape(a.max() + 1, b.max() + 1) / len(a)  # (A, B)
    p_a, p_b = p_ab.sum(axis=1, keepdims=True), p_ab.sum(axis=0, keepdims=True)  # (A, 1), (1, B)
    nz = p_ab > 0  # 0 log 0 = 0: empty cells contribute nothing (and their marginals may be 0)
    return float(max(0.0, (p_ab[nz] * np.log(p_ab[nz] / (p_a @ p_b)[nz])).sum()))


def discrete_entropy(b: np.ndarray) -> float:
    """H(b) in nats of an (N,) array of non-negative int labels."""
    p = np.bincount(b) / len(b)
    p = p[p > 0]
    return float(max(0.0, -(p * np.log(p)).sum()))
