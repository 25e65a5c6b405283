"""Film physics and display processing of the simulator (mlcak_lib.synth.film) on inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from mlcak_lib.synth import film


def _smooth_image(n: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return film.lowpass(rng.random((n, n), dtype=np.float32), 4) + 0.1 * rng.random((n, n), dtype=np.float32)


def test_characteristic_curve_is_monotone_and_maps_the_window_ends():
    t = np.linspace(-0.2, 1.2, 201, dtype=np.float32)
    for slope, mid in [(2.0, 0.5), (4.0, 0.22), (6.0, 0.7)]:
        y = film.characteristic_curve(t.copy(), slope, mid)
        assert np.all(np.diff(y) >= 0)
        assert y.min() == 0.0 and y.max() == 1.0
        ends = film.characteristic_curve(np.array([0.0, 1.0], np.float32), slope, mid)
        np.testing.assert_allclose(ends, [0.0, 1.0], atol=1e-5)


@pytest.mark.parametrize("shape", [(64, 64), (101, 77), (224, 224)])
def test_pyramid_with_unit_gains_is_the_identity_and_uniform_gain_scales(shape):
    q = _smooth_image(max(shape))[: shape[0], : shape[1]].copy()
    levels = film.pyramid_levels(min(shape))
    np.testing.assert_allclose(film.multiscale(q, [1.0] * levels, 1.0), q, atol=1e-6)
    # the same gain on every band and the residual: the decomposition is exact, so the image scales
    np.testing.assert_allclose(film.multiscale(q, [2.5] * levels, 2.5), 2.5 * q, rtol=1e-5, atol=1e-5)


def test_up2_matches_the_bilinear_matrix_and_down2_averages():
    x = np.random.default_rng(1).random((9, 13), dtype=np.float32)
    want = film.up_matrix(9, 18)[:17] @ x @ film.up_matrix(13, 26)[:25].T
    np.testing.assert_allclose(film._up2(x, (17, 25)), want, atol=1e-6)
    big = np.random.default_rng(2).random((150, 150), dtype=np.float32)  # the strided-slice path
    np.testing.assert_allclose(film._up2(big, (300, 300)), film.up_matrix(150, 300) @ big @ film.up_matrix(150, 300).T,
                               atol=1e-5)
    assert film._down2(np.ones((7, 6), np.float32)).shape == (4, 3)
    np.testing.assert_allclose(film._down2(np.arange(4, dtype=np.float32).reshape(2, 2)), [[1.5]])


def test_knee_compresses_big_edges_more_than_small_ones_and_coring_removes_small_ripple():
    n = 128
    step = np.zeros((n, n), np.float32)
    step[:, n // 2:] = 1.0
    small = 0.02 * step
    gains = [1.0] * film.pyramid_levels(n)

    def edge(img):
        return float(img[n // 2, n // 2 + 2] - img[n // 2, n // 2 - 3])

    kneed_big = edge(film.multiscale(step, gains, 1.0, [0.05] * len(gains)))
    kneed_small = edge(film.multiscale(small, gains, 1.0, [0.05] * len(gains)))
    assert kneed_big / edge(step) < 0.8 * kneed_small / edge(small)
    ripple = 0.005 * np.cos(np.arange(n) * np.pi)[None, :].astype(np.float32) * np.ones((n, 1), np.float32)
    cored = film.multiscale(ripple, gains, 1.0, coring=[0.05] + [0.0] * (len(gains) - 1))
    assert np.abs(cored).max() < 0.1 * np.abs(ripple).max()


def test_quantum_noise_scales_with_one_over_sqrt_photons():
    intensity = np.full((256, 256), 0.25, np.float32)
    sds = []
    for photons in (1e3, 1e5):
        noisy = film.add_quantum_noise(intensity.copy(), photons, np.random.default_rng(0))
        sds.append(float(noisy.std()))
        assert abs(float(noisy.mean()) - 0.25) < 5 * sds[-1] / 256
    np.testing.assert_allclose(sds[0] / sds[1], 10.0, rtol=0.03)
    np.testing.assert_allclose(sds[1], np.sqrt(0.25 / 1e5), rtol=0.03)  # Poisson: variance I / N


def test_bone_term_zero_at_the_ct_energy_and_grows_at_lower_energy():
    assert film.bone_excess_per_mm(film.CT_KEV) == pytest.approx(0.0, abs=1e-12)
    assert film.bone_excess_per_mm(50.0) > film.bone_excess_per_mm(60.0) > 0.0 > film.bone_excess_per_mm(90.0)


def test_expose_without_bone_equals_zero_bone_and_bone_brightens():
    p = 2.0 + _smooth_image(96)
    bone = np.zeros_like(p)
    bone[40:56, 20:76] = 20.0  # a 20 mm "rib"
    a, _, pa = film.expose(p, None, 1.3, np.random.default_rng(5), 0.0)
    b, _, _ = film.expose(p, np.zeros_like(p), 1.3, np.random.default_rng(5), 0.0)
    c, stages, pc = film.expose(p, bone, 1.3, np.random.default_rng(5), 0.0, keep_stages=True)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.min() >= 0.0 and a.max() <= 1.0
    assert c[44:52, 30:66].mean() > a[44:52, 30:66].mean() + 0.02
    assert set(stages) == {"intensity", "log", "processed"}
    assert pa["effective_kev"] == film.SETTINGS["effective_kev"][0]  # acquisition 0: mid-range settings
    assert pc["bone_excess_per_mm"] > 0


def test_scatter_lifts_the_dark_side_relative_to_the_bright_side():
    primary = np.full((64, 64), 0.1, np.float32)
    primary[:, 32:] = 0.01  # "mediastinum": little primary beside bright "lung"
    total = film.add_scatter(primary, 0.3, 16)
    spr = (total - primary) / primary
    assert 0.25 < np.median(spr[:, :16]) < 0.35  # far inside the bright side: about the nominal ratio
    assert np.median(spr[:, 34:40]) > 2 * np.median(spr[:, :16])  # near it, behind the dark side, more
