"""mlcak_lib.realism: every measure on inputs whose answer is known, then RG1 as the reference."""

import itertools

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from mlcak_lib.realism import (
    RG1_ASSUMED_SPACING_MM,
    RIB_BAND_CPMM,
    band_energy_fraction,
    cardiothoracic_ratio,
    ctr_geometry,
    directional_power_ratio,
    intensity_histogram_distance,
    lung_field_fraction,
    noise_power_spectrum,
    patient_from_sharpness_accuracy,
    radial_power_spectrum,
    rg1_reference,
    sharpness_statistic,
)


def _grating(n: int, cycles: int, axis: int) -> np.ndarray:
    """A cosine with a whole number of ``cycles`` across ``n`` pixels, varying along ``axis`` (0: y)."""
    t = np.arange(n) * 2 * np.pi * cycles / n
    wave = 0.5 + 0.25 * np.cos(t)
    return np.repeat(wave[:, None], n, 1) if axis == 0 else np.repeat(wave[None, :], n, 0)


def _noise(n: int = 256, sd: float = 0.1, seed: int = 0) -> np.ndarray:
    return 0.5 + sd * np.random.default_rng(seed).standard_normal((n, n))


# ------------------------------------------------------------------ anatomy
def test_lung_field_fraction_of_a_rectangle():
    mask = np.zeros((200, 100), bool)
    mask[20:70, 30:70] = True  # 50 x 40 = 2000 of 20000 pixels
    assert lung_field_fraction(mask) == pytest.approx(0.1)
    assert lung_field_fraction(mask.astype(np.uint8)) == pytest.approx(0.1)
    assert lung_field_fraction(np.zeros((4, 4))) == 0.0


def _thorax_and_heart(scale: int = 1):
    thorax = np.zeros((200, 200), bool)
    thorax[40:160, 20:90] = True  # right lung (viewer's left)
    thorax[40:160, 111:181] = True  # left lung
    thorax[140:150, 10:191] = True  # the widest row: columns 10..190 -> 181 px (spans the gap)
    rows, cols = np.mgrid[0:200, 0:200]
    heart = ((cols - 100) / 30.0) ** 2 + ((rows - 120) / 25.0) ** 2 <= 1.0  # columns 70..130 -> 61 px
    if scale > 1:
        k = np.ones((scale, scale), bool)
        thorax, heart = np.kron(thorax, k), np.kron(heart, k)
    return heart, thorax


def test_cardiothoracic_ratio_is_exact_and_scale_free():
    heart, thorax = _thorax_and_heart()
    assert cardiothoracic_ratio(heart, thorax) == pytest.approx(61 / 181)
    heart2, thorax2 = _thorax_and_heart(scale=2)
    assert cardiothoracic_ratio(heart2, thorax2) == pytest.approx(61 / 181)


def test_cardiothoracic_ratio_uses_one_row_for_the_thorax_and_the_full_span_for_the_heart():
    thorax = np.zeros((100, 100), bool)
    thorax[10:20, 10:50] = True  # 40 px on these rows
    thorax[30:40, 50:90] = True  # 40 px on these: the bounding box (80 px) is NOT a row's width
    heart = np.zeros((100, 100), bool)
    heart[50, 30:40] = True  # right border at row 50 ...
    heart[60, 45:60] = True  # ... left border at row 60: MRD + MLD spans columns 30..59 = 30 px
    assert cardiothoracic_ratio(heart, thorax) == pytest.approx(30 / 40)
    g = ctr_geometry(heart, thorax)
    assert g["heart_cols"] == (30, 59) and g["thorax"] == (10, 10, 49)  # first widest row


def test_cardiothoracic_ratio_edge_cases():
    heart, thorax = _thorax_and_heart()
    assert np.isnan(cardiothoracic_ratio(np.zeros_like(heart), thorax))
    assert np.isnan(cardiothoracic_ratio(heart, np.zeros_like(thorax)))
    assert ctr_geometry(np.zeros_like(heart), thorax) is None
    with pytest.raises(ValueError):
        cardiothoracic_ratio(heart, thorax[:100])


# ------------------------------------------------------------------ spectra
def test_radial_power_spectrum_peaks_at_a_grating_frequency():
    n, mm = 256, 0.5  # 128 mm field: 16 cycles -> 0.125 cycles/mm
    f, p = radial_power_spectrum(_grating(n, 16, axis=1), mm)
    assert f[np.nanargmax(p)] == pytest.approx(0.125)
    assert f[-1] == pytest.approx(0.5 / mm)  # up to Nyquist
    assert np.all(np.diff(f) == pytest.approx(1 / (n * mm)))


def test_radial_power_spectrum_of_white_noise_is_flat_at_variance_times_pixel_area():
    sd, mm = 0.1, 0.5
    _f, p = radial_power_spectrum(_noise(256, sd), mm)
    level = sd ** 2 * mm ** 2
    assert np.mean(p[2:]) == pytest.approx(level, rel=0.05)
    for chunk in np.array_split(p[2:], 4):  # low to high frequencies: flat
        assert np.mean(chunk) == pytest.approx(level, rel=0.1)


def test_band_energy_fraction_of_gratings_and_of_white_noise():
    n, mm = 256, 0.5
    grating = _grating(n, 16, axis=0)  # 0.125 cycles/mm, inside the rib band
    assert RIB_BAND_CPMM[0] < 0.125 < RIB_BAND_CPMM[1]
    assert band_energy_fraction(grating, mm, (0.1, 0.15)) > 0.97
    assert band_energy_fraction(grating, mm) > 0.97
    assert band_energy_fraction(_grating(n, 64, axis=1), mm) < 0.02  # 0.5 cycles/mm: outside
    # white noise: the band's share of the disk up to Nyquist is its share of the area
    lo, hi = RIB_BAND_CPMM
    expected = (hi ** 2 - lo ** 2) / 0.5 ** 2  # pixel 1 mm: Nyquist 0.5
    assert band_energy_fraction(_noise(256), 1.0) == pytest.approx(expected, abs=0.02)
    with pytest.raises(ValueError):
        band_energy_fraction(grating, mm, (0.2, 0.1))


def test_directional_power_ratio_sees_horizontal_edges():
    n, mm = 256, 0.5
    assert directional_power_ratio(_grating(n, 16, axis=0), mm) > 100  # varies along y: "ribs"
    assert directional_power_ratio(_grating(n, 16, axis=1), mm) < 0.01
    assert directional_power_ratio(_noise(n), mm) == pytest.approx(1.0, abs=0.15)


def test_noise_power_spectrum_of_white_noise():
    sd, mm = 0.1, 0.5
    level = sd ** 2 * mm ** 2
    f, nps = noise_power_spectrum(_noise(256, sd), mm, patch=32, flat_fraction=1.0)
    assert len(f) == 16 and f[0] == pytest.approx(1 / (32 * mm)) and f[-1] == pytest.approx(1.0)
    assert np.mean(nps[1:]) == pytest.approx(level, rel=0.05)
    assert np.all(np.abs(nps[1:] / level - 1) < 0.15)
    # the flattest quarter: a small downward selection bias only
    _, nps_flat = noise_power_spectrum(_noise(256, sd), mm)
    assert 0.85 * level < np.mean(nps_flat[1:]) <= level * 1.02


def test_noise_power_spectrum_detrends_smooth_anatomy_and_respects_the_mask():
    sd, mm, n = 0.05, 1.0, 256
    rows, cols = np.mgrid[0:n, 0:n] / n
    smooth = 0.3 + 0.4 * rows + 0.2 * np.sin(2 * np.pi * cols)  # slow "anatomy", no noise
    noisy = smooth + _noise(n, sd) - 0.5
    _, nps = noise_power_spectrum(noisy, mm, flat_fraction=1.0)
    assert np.mean(nps[1:]) == pytest.approx(sd ** 2 * mm ** 2, rel=0.1)
    # twice the noise in the right half; the mask selects the left half
    noisy[:, n // 2:] += _noise(n, sd, seed=1)[:, n // 2:] * np.sqrt(3) - 0.5 * np.sqrt(3)
    mask = np.zeros((n, n), bool)
    mask[:, : n // 2] = True
    _, nps_left = noise_power_spectrum(noisy, mm, flat_fraction=1.0, mask=mask)
    assert np.mean(nps_left[1:]) == pytest.approx(sd ** 2 * mm ** 2, rel=0.1)
    with pytest.raises(ValueError):
        noise_power_spectrum(noisy, mm, mask=np.zeros((n, n), bool))


def test_noise_power_spectrum_of_correlated_noise_falls_with_frequency():
    blurred = gaussian_filter(_noise(256), 1.0)
    _f, nps = noise_power_spectrum(blurred, 1.0, flat_fraction=1.0)
    assert nps[2] > 10 * nps[-1]


# ------------------------------------------------------------------ grey levels
def test_intensity_histogram_distance():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.2, 0.7, (64, 64))
    assert intensity_histogram_distance(a, a) == 0.0
    assert intensity_histogram_distance(a, a + 0.1) == pytest.approx(0.1, abs=1e-9)
    assert intensity_histogram_distance(a, a[::-1].T.copy()) == pytest.approx(0.0, abs=1e-12)  # same pixels
    assert intensity_histogram_distance(a, 0.5 * a + 0.3, normalize=True) == pytest.approx(0.0, abs=1e-9)
    mask = np.zeros(a.shape, bool)
    mask[:32] = True
    b = a.copy()
    b[32:] = 1.0  # only outside the mask
    assert intensity_histogram_distance(a, b, mask, mask) == 0.0
    assert intensity_histogram_distance(a, b) > 0.1
    # two sizes are fine: a uniform distribution against a finer sample of itself
    assert intensity_histogram_distance(a, rng.uniform(0.2, 0.7, (128, 128))) < 0.01


# ------------------------------------------------------------------ sharpness shortcut
def test_sharpness_statistic_orders_by_blur_and_ignores_grey_scale():
    sharp = _noise(128)
    values = [sharpness_statistic(gaussian_filter(sharp, s)) for s in (0.0, 0.5, 1.0, 2.0)]
    assert all(a > b for a, b in itertools.pairwise(values))
    assert sharpness_statistic(sharp) == pytest.approx(sharpness_statistic(0.5 * sharp + 0.2))
    # white noise: the ratio of the frequencies counted in the two rings (0.25-0.5, 0.0625-0.25 cycles/pixel)
    f = np.fft.fftfreq(256)
    fr = np.hypot(f[:, None], f[None, :])
    expected = np.log10(((fr >= 0.25) & (fr <= 0.5)).sum() / ((fr >= 0.0625) & (fr < 0.25)).sum())
    assert sharpness_statistic(_noise(256)) == pytest.approx(expected, abs=0.03)


def test_patient_from_sharpness_accuracy_near_chance_without_signal_and_near_one_with():
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(5), 60)
    same = rng.normal(0.0, 1.0, len(ids))
    res = patient_from_sharpness_accuracy(same, ids)
    assert res["chance"] == pytest.approx(0.2) and res["n"] == 300 and res["n_patients"] == 5
    assert abs(res["accuracy"] - res["chance"]) < 0.1
    separable = ids * 10.0 + rng.normal(0.0, 1.0, len(ids))
    assert patient_from_sharpness_accuracy(separable, ids)["accuracy"] > 0.98
    # different spread, same mean: one Gaussian per patient still tells them apart
    spread = rng.normal(0.0, 1.0, len(ids)) * np.where(ids == 0, 0.05, 5.0)
    two = np.where(ids == 0, 0, 1)
    assert patient_from_sharpness_accuracy(spread, two)["accuracy"] > 0.9


def test_patient_from_sharpness_accuracy_chance_is_the_majority_share():
    ids = np.array([0] * 60 + [1] * 30 + [2] * 30)
    x = np.random.default_rng(1).normal(size=(120, 2))
    assert patient_from_sharpness_accuracy(x, ids)["chance"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        patient_from_sharpness_accuracy(x[:10], ids[:10])
    with pytest.raises(ValueError):
        patient_from_sharpness_accuracy(np.full(120, np.nan), ids)


# ------------------------------------------------------------------ RG1
@pytest.fixture(scope="module")
def rg1():
    pytest.importorskip("pydicom")
    try:
        return rg1_reference(224)
    except FileNotFoundError:
        pytest.skip("pydicom-data (RG1_UNCR.dcm) is not installed")


def test_rg1_reference_is_the_course_view_with_its_pixel_size(rg1):
    assert rg1.image.shape == (224, 224) and rg1.image.dtype == np.float32
    assert rg1.native_px == 1841 and rg1.field_mm == pytest.approx(1841 * RG1_ASSUMED_SPACING_MM)
    assert rg1.pixel_mm == pytest.approx(368.2 / 224)
    assert 0.0 <= rg1.image.min() and rg1.image.max() <= 1.0
    assert not rg1.image.flags.writeable
    assert rg1_reference(224) is rg1  # cached


def test_rib_band_reproduces_on_rg1_upper_lungs():
    """The measurement behind RIB_BAND_CPMM: RG1's upper-lung ROIs at 0.4 mm hold more power at
    vertical than horizontal frequencies in the rib band (near-horizontal rib edges)."""
    pytest.importorskip("pydicom")
    from mlcak_lib.dicom import read_dicom, rg1_path
    from mlcak_lib.resize import area_resize

    try:
        pixels = read_dicom(rg1_path()).pixels
    except FileNotFoundError:
        pytest.skip("pydicom-data (RG1_UNCR.dcm) is not installed")
    half = area_resize(pixels, (pixels.shape[0] // 2, pixels.shape[1] // 2))  # 0.4 mm/pixel
    for r0, c0 in ((250, 120), (250, 540)):
        roi = half[r0:r0 + 256, c0:c0 + 256]
        assert directional_power_ratio(roi, 2 * RG1_ASSUMED_SPACING_MM, RIB_BAND_CPMM) > 1.4
        assert directional_power_ratio(roi, 2 * RG1_ASSUMED_SPACING_MM, (0.5, 1.0)) < 1.2
