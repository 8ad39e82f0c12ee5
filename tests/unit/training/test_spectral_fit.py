"""The frequency score's fit (scikit-learn, at fitting time only): it separates, it minimises the penalised
log loss it is documented to, and it round-trips through spectral.json."""

from __future__ import annotations

import numpy as np

from detector.spectral import SpectralScore, radial_spectrum
from tests.unit.detector.test_spectral import noise_images
from training.spectral import fit_spectral_score


def test_fit_separates_sharp_from_blurred_and_round_trips(tmp_path) -> None:
    images = np.concatenate([noise_images(100, 0, 1), noise_images(100, 0.8, 2)])
    labels = np.array([1] * 100 + [0] * 100)
    score = fit_spectral_score(images, labels)
    held_out = np.concatenate([noise_images(20, 0, 3), noise_images(20, 0.8, 4)])
    assert ((score.p_fake(held_out) > 0.5) == np.array([True] * 20 + [False] * 20)).mean() == 1.0
    score.save(tmp_path)
    assert np.allclose(SpectralScore.load(tmp_path).p_fake(held_out), score.p_fake(held_out))


def test_the_fit_is_the_minimum_of_the_l2_penalised_log_loss_with_a_free_bias() -> None:
    """At the optimum the gradient of sum(log loss) + l2 * N / 2 * |w|² vanishes, and the bias's alone."""
    rng = np.random.default_rng(0)
    images = np.concatenate([noise_images(60, 0, 5), noise_images(60, 0.6, 6)])
    labels = rng.permutation(np.array([1] * 70 + [0] * 50))   # overlapping classes: a finite, penalised optimum
    l2 = 1e-2
    score = fit_spectral_score(images, labels, l2)
    z = (radial_spectrum(images) - np.asarray(score.mean)) / np.asarray(score.std)
    p = score.p_fake(images)
    weights = np.asarray(score.weights)
    assert np.abs(z.T @ (p - labels) + l2 * len(labels) * weights).max() < 1e-3
    assert abs((p - labels).sum()) < 1e-3
