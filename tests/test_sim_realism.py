"""Issue 12's realism checks: the simulator's normal films, measured (mlcak_lib.realism) against stated tolerances.

100 normal films of all five patients (``SynthConfig(patients={"train": PATIENTS})``, images 0-99 of the
train split, seed 0, 224 px), measured with :func:`mlcak_lib.realism.measure_normal_films` against RG1 as
the course reads it (:func:`mlcak_lib.realism.rg1_reference`). Each test states its tolerance and where it
comes from. (Checks the simulator did not meet were ``xfail(strict=True)`` with the measured number in the
reason until it met them.)
"""

import numpy as np
import pytest

from mlcak_lib.realism import (
    contrast_normalised,
    measure_normal_films,
    noise_power_spectrum,
    patient_from_sharpness_accuracy,
    rg1_reference,
)
from mlcak_lib.synth import SynthConfig, SynthCXR
from mlcak_lib.synth.patients import PATIENTS

N_FILMS = 100


@pytest.fixture(scope="module")
def sim():
    return SynthCXR(SynthConfig(patients={"train": PATIENTS}))


@pytest.fixture(scope="module")
def rg1():
    return rg1_reference(224)


@pytest.fixture(scope="module")
def films(sim, rg1):
    return measure_normal_films(sim, N_FILMS, rg1.image, f_max=0.5 / rg1.pixel_mm)


def test_every_patient_is_measured(films):
    assert set(films["patient"]) == set(PATIENTS)


def test_cardiothoracic_ratio_of_normals_is_plausible(films):
    """Normal adult PA films: CTR below 0.5 (Danzer 1919), mean in the low-to-mid 0.4s with an sd of about
    0.03-0.05 (Nickol & Wade 1982; quoted from memory, see mlcak_lib/synth/lesions/heart.py)."""
    ctr = films["ctr"]
    assert np.isfinite(ctr).all()
    assert 0.42 <= ctr.mean() <= 0.48, ctr.mean()
    assert 0.02 <= ctr.std() <= 0.06, ctr.std()
    assert np.percentile(ctr, 95) < 0.5


def test_grey_level_histogram_is_closer_to_rg1_than_before_issue_12(films):
    """Wasserstein-1 distance of each film's 1-99 % normalised grey levels to RG1's: below 0.25 on average
    (the single-CT simulator before issue 12 measured 0.30, mlcak_lib/data/results/realism_current.csv)."""
    assert films["w1_norm"].mean() < 0.25, films["w1_norm"].mean()


def test_noise_power_is_within_a_factor_two_of_rg1(sim, rg1):
    """ROI noise power spectrum (flattest quarter of 32-px ROIs) at 0.10-0.28 cycles/mm within 0.5-2x RG1's,
    each film and RG1 first brought to the same display contrast (1-99 % percentiles to 0-1,
    realism.contrast_normalised): RG1's own window is pale (0.25-0.92), the simulator's films use the full
    range, which alone makes their absolute NPS ~2x larger (mlcak_lib/data/results/realism_issue12.csv has both rows)."""
    freqs = (0.10, 0.20, 0.28)
    f_ref, nps_ref = noise_power_spectrum(contrast_normalised(rg1.image), rg1.pixel_mm)
    ref = np.interp(freqs, f_ref, nps_ref)
    ours = []
    for i in range(40):
        s = sim.generate(i, "train", 0, findings=[], keep_masks=False)
        f, nps = noise_power_spectrum(contrast_normalised(s["image"]), s["mm_per_px"])
        ours.append(np.interp(freqs, f, nps))
    ratio = np.mean(ours, axis=0) / ref
    assert ((ratio > 0.5) & (ratio < 2.0)).all(), ratio


def test_rib_edges_are_visible(films, rg1):
    """Share of the power at 0.05-0.30 cycles/mm (rib edges, realism.RIB_BAND_CPMM) within 0.5-2x RG1's
    (before the drawn ribs 0.21x; with them but the CTs blurred to 4 mm, 0.41x)."""
    from mlcak_lib.realism import RIB_BAND_CPMM, band_energy_fraction

    ref = band_energy_fraction(rg1.image, rg1.pixel_mm, RIB_BAND_CPMM, f_max=0.5 / rg1.pixel_mm)
    assert 0.5 < films["rib"].mean() / ref < 2.0, (films["rib"].mean(), ref)


def test_lung_fields_cover_a_plausible_fraction_of_the_frame(films):
    """Radiographic lung field (projected lung without the heart) 0.35-0.50 of a PA frame collimated to the
    chest, chest walls in (judgement, realism_report's REFERENCES; a full 35 x 43 cm field gives ~0.25-0.35)."""
    assert 0.35 <= films["lung_open"].mean() <= 0.50, films["lung_open"].mean()


def test_patient_is_not_decodable_from_sharpness(films):
    """Cross-validated accuracy of predicting the patient from the sharpness statistic alone stays within 0.1
    of chance (the commonest patient's share)."""
    res = patient_from_sharpness_accuracy(films["sharp"], films["patient"])
    assert res["accuracy"] < res["chance"] + 0.1, res
