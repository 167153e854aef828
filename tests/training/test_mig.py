"""The Mutual Information Gap on codes whose answer is known: copies, noise, duplicates, exact cases."""

import math

import numpy as np
import pytest
from sklearn.metrics import mutual_info_score

from training.mig import discretize, mutual_information_gap

SIZES = (3, 6, 16, 16, 16)  # factor value counts as in the shapes dataset


def factors(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, k, n) for k in SIZES], axis=1)  # (n, 5) int


def copy_code(f: np.ndarray, seed: int = 1) -> np.ndarray:
    """Each factor as a float code dimension plus tiny noise: (n, K)."""
    return f + 1e-3 * np.random.default_rng(seed).standard_normal(f.shape)


def test_a_copy_of_the_factors_scores_about_one():
    f = factors(5000)
    result = mutual_information_gap(copy_code(f), f)
    assert result.mig > 0.9 and (result.per_factor > 0.9).all()
    assert result.mutual_info.shape == (5, 5) and result.factor_entropy.shape == (5,)
    # Each dimension holds all of its own factor (one value per bin) and next to nothing of the others.
    assert np.diag(result.mutual_info) == pytest.approx(result.factor_entropy, rel=1e-12)
    assert result.factor_entropy == pytest.approx(np.log(SIZES), abs=0.01)
    assert (result.mutual_info[~np.eye(5, dtype=bool)] < 0.05).all()


def test_a_permuted_rescaled_copy_with_extra_noise_dimensions_still_scores_about_one():
    f = factors(5000)
    rng = np.random.default_rng(2)
    code = np.c_[copy_code(f) * np.array([3.0, -0.5, 10.0, 1.0, -2.0]) + 7.0, rng.standard_normal((5000, 3))]
    order = rng.permutation(8)
    result = mutual_information_gap(code[:, order], f)
    assert result.mig > 0.9
    # The most informative dimension of factor k is where its copy went.
    assert np.array_equal(np.argmax(result.mutual_info, axis=0), np.argsort(order)[:5])


def test_a_code_independent_of_the_factors_scores_about_zero():
    f = factors(10_000)
    code = np.random.default_rng(3).standard_normal((10_000, 6))
    result = mutual_information_gap(code, f)
    assert 0 <= result.mig < 0.05
    assert (result.mutual_info < 0.05).all()  # only the histogram estimator's small positive bias


def test_each_factor_copied_into_two_dimensions_scores_zero():
    f = factors(5000)
    code = np.c_[copy_code(f, seed=1), copy_code(f, seed=2)]  # (n, 10): two noisy copies of each factor
    result = mutual_information_gap(code, f)
    # Each copy's bins determine its factor, so both carry all of H(v_k): top1 == top2.
    assert result.mig == pytest.approx(0.0, abs=1e-9)
    assert np.diag(result.mutual_info[:5]) == pytest.approx(result.factor_entropy, rel=1e-12)
    assert np.diag(result.mutual_info[5:]) == pytest.approx(result.factor_entropy, rel=1e-12)
    # Spoil one copy of factor 0 with large noise: its gap opens again, the others stay shut.
    code[:, 5] += 3.0 * np.random.default_rng(4).standard_normal(5000)
    spoiled = mutual_information_gap(code, f)
    assert spoiled.per_factor[0] > 0.3 and spoiled.per_factor[1:] == pytest.approx(0.0, abs=1e-9)


def test_mutual_information_matches_theory_on_exact_cases():
    # A uniform 4-valued factor and a code equal to it, each value in its own one of 4 bins: I = H = log 4.
    v = np.repeat(np.arange(4), 256)  # (1024,) exactly uniform
    w = np.tile(np.arange(4), 256)  # a second factor, exactly independent of v (all 16 pairs equally often)
    result = mutual_information_gap(np.c_[v, v % 2].astype(float), np.c_[v, w], bins=4)
    assert np.array_equal(discretize(v.astype(float), 4), v)
    assert result.factor_entropy == pytest.approx([math.log(4), math.log(4)], rel=1e-12)
    assert result.mutual_info[0, 0] == pytest.approx(math.log(4), rel=1e-12)
    assert result.mutual_info[1, 0] == pytest.approx(math.log(2), rel=1e-12)  # v mod 2 keeps one bit
    assert result.mutual_info[:, 1] == pytest.approx([0.0, 0.0], abs=1e-12)  # independent: exactly 0
    assert result.per_factor[0] == pytest.approx((math.log(4) - math.log(2)) / math.log(4))  # = 1/2
    assert result.per_factor[1] == pytest.approx(0.0, abs=1e-12)
    assert result.mig == pytest.approx(0.25)


def test_mutual_information_agrees_with_scikit_learn_on_binned_codes():
    f = factors(3000)
    rng = np.random.default_rng(5)
    code = f[:, :3] * 0.3 + rng.standard_normal((3000, 3))  # partly informative, partly noise
    result = mutual_information_gap(code, f, bins=10)
    for j in range(3):
        for k in range(5):
            expected = mutual_info_score(discretize(code[:, j], 10), f[:, k])
            assert result.mutual_info[j, k] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert result.factor_entropy[2] == pytest.approx(mutual_info_score(f[:, 2], f[:, 2]), rel=1e-12)


def test_discretize_uses_equal_width_bins_with_the_maximum_in_the_last():
    assert np.array_equal(discretize(np.array([0.0, 0.49, 0.5, 0.99, 1.0]), 2), [0, 0, 1, 1, 1])
    assert np.array_equal(discretize(np.full(4, 2.5), 5), [0, 0, 0, 0])


def test_constant_factors_are_skipped_and_bad_inputs_rejected():
    f = factors(2000)
    f[:, 1] = 4  # a factor that never varies
    result = mutual_information_gap(copy_code(f), f)
    assert np.isnan(result.per_factor[1]) and result.factor_entropy[1] == 0.0
    assert result.mig == pytest.approx(np.mean(result.per_factor[[0, 2, 3, 4]]))
    with pytest.raises(ValueError, match="every factor is constant"):
        mutual_information_gap(np.random.default_rng(0).standard_normal((10, 2)), np.zeros((10, 2), int))
    with pytest.raises(ValueError, match="share N"):
        mutual_information_gap(np.zeros((10, 2)), np.zeros((9, 2), int))
    with pytest.raises(ValueError, match="integers"):
        mutual_information_gap(np.zeros((10, 2)), np.zeros((10, 2)))
    with pytest.raises(ValueError, match="finite"):
        mutual_information_gap(np.full((10, 2), np.nan), np.zeros((10, 2), int))
