"""Realism measurements of chest radiographs: the numbers that judge the simulator against RG1 (notebook 01).

Every function is pure (NumPy/SciPy; scikit-learn for the one classifier) and takes course images:
2-D float arrays in [0, 1], bone bright; where a measure is physical it takes the pixel size in mm
and answers in cycles/mm.

* anatomy: :func:`lung_field_fraction`, :func:`cardiothoracic_ratio` (from the simulator's masks);
* spectra: :func:`radial_power_spectrum`, :func:`band_energy_fraction` (the rib band
  :data:`RIB_BAND_CPMM`), :func:`directional_power_ratio` (ribs are near-horizontal edges: they put
  more power at vertical than at horizontal frequencies), :func:`noise_power_spectrum` (and
  :func:`contrast_normalised`, to compare it without the display's contrast);
* grey levels: :func:`intensity_histogram_distance` (Wasserstein-1);
* shortcut check: :func:`sharpness_statistic` and :func:`patient_from_sharpness_accuracy` (can a
  classifier tell the patient (CT) from image sharpness alone? It should stay near chance);
* the real reference: :func:`rg1_reference` (RG1 processed like the course processes it).

``scripts/realism_report.py`` applies them to the simulator and writes ``mlcak_lib/data/results/realism_current.*``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.stats import wasserstein_distance

from .dicom import read_dicom, rg1_path
from .resize import area_resize, center_crop_square

RIB_BAND_CPMM: tuple[float, float] = (0.05, 0.30)
"""Spatial-frequency band (cycles/mm) where rib edges put their energy on a PA chest film.

Anatomy: posterior ribs repeat every ~20-30 mm (fundamental ~0.04 cycles/mm) and are ~10 mm tall
with cortical edges a few mm wide, so their edges live in ~0.05-0.5 cycles/mm. Measured on RG1 at
0.4 mm/pixel with :func:`directional_power_ratio` (ribs are near-horizontal edges, so they add power
at *vertical* frequencies; 102 mm ROIs, ``tests/test_realism.py`` repeats it): in the two upper-lung
ROIs the vertical/horizontal power ratio is 1.2-3.0 in each sub-band from 0.05 to 0.30 cycles/mm
(1.56 and 1.61 over the whole band), 1.1 at 0.30-0.50 and <= 1.1 above; below 0.05 it is 2.6-3.6,
but there the outlines of the lungs, mediastinum and diaphragm dominate. The band stops at 0.30 because RG1
resized to 224 px has its Nyquist frequency at 0.304 cycles/mm (1.64 mm pixels), and the simulator's
at ~0.35-0.40: a band above that could not be compared at the course's resolution.
"""

RG1_ASSUMED_SPACING_MM: float = 0.2
"""RG1's pixel size (mm) at full resolution. Its PixelSpacing is 0\\\\0 (invalid); notebook 01
estimates 0.2 mm from the collimator edges (a 368 x 392 mm field over 1841 x 1955 pixels)."""


# ----------------------------------------------------------------------------------------------
# anatomy from masks
# ----------------------------------------------------------------------------------------------
def lung_field_fraction(lung_mask: np.ndarray) -> float:
    """Share of the frame covered by ``lung_mask`` (bool or {0, 1}, any shape): pixels in / all pixels."""
    m = np.asarray(lung_mask, dtype=bool)
    if m.size == 0:
        raise ValueError("lung_mask is empty")
    return float(m.mean())


def _widest_row(mask: np.ndarray) -> tuple[int, int, int] | None:
    """``(row, first column, last column)`` of the row whose True pixels span the most columns."""
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return None
    sub = mask[rows]
    first = np.argmax(sub, axis=1)
    last = sub.shape[1] - 1 - np.argmax(sub[:, ::-1], axis=1)
    k = int(np.argmax(last - first))
    return int(rows[k]), int(first[k]), int(last[k])


def ctr_geometry(heart_mask: np.ndarray, thorax_mask: np.ndarray) -> dict[str, tuple[int, ...]] | None:
    """The two diameters of :func:`cardiothoracic_ratio`, in pixels (to draw them).

    ``heart_cols``: first and last column of the heart silhouette (MRD + MLD); ``thorax``:
    ``(row, first column, last column)`` of the widest row of ``thorax_mask``. None when either mask
    is empty.
    """
    heart = np.asarray(heart_mask, dtype=bool)
    thorax = np.asarray(thorax_mask, dtype=bool)
    if heart.ndim != 2 or heart.shape != thorax.shape:
        raise ValueError(f"masks must be 2-D and of one shape, got {heart.shape} and {thorax.shape}")
    cols = np.flatnonzero(heart.any(axis=0))
    widest = _widest_row(thorax)
    if len(cols) == 0 or widest is None:
        return None
    return {"heart_cols": (int(cols[0]), int(cols[-1])), "thorax": widest}


def cardiothoracic_ratio(heart_mask: np.ndarray, thorax_mask: np.ndarray) -> float:
    """Cardiothoracic ratio of a PA film: transverse cardiac diameter / maximal inner thoracic diameter.

    Standard PA definition (Danzer 1919): the cardiac diameter is MRD + MLD, the largest distances
    of the right and the left heart border from the midline, possibly at different levels; that is
    the horizontal extent of the heart silhouette, here the column span of ``heart_mask``
    (``max col - min col + 1``). The thoracic diameter is the largest horizontal distance between the
    inner rib margins *on one row*, here the widest single-row span of ``thorax_mask`` (a lung mask
    works: the outer lung margins are the inner rib margins; the gap between the lungs is spanned).
    Pixel widths cancel, so no pixel size is needed. Normal adults: < 0.5. Returns NaN when either
    mask is empty. :func:`ctr_geometry` gives the two diameters' positions.
    """
    g = ctr_geometry(heart_mask, thorax_mask)
    if g is None:
        return float("nan")
    (h0, h1), (_, t0, t1) = g["heart_cols"], g["thorax"]
    return float((h1 - h0 + 1) / (t1 - t0 + 1))


# ----------------------------------------------------------------------------------------------
# spectra
# ----------------------------------------------------------------------------------------------
def _as_image(image: np.ndarray) -> np.ndarray:
    x = np.asarray(image, dtype=np.float64)
    if x.ndim != 2 or min(x.shape) < 4:
        raise ValueError(f"expected a 2-D image of at least 4 x 4 pixels, got shape {x.shape}")
    return x


def _psd2(image: np.ndarray, pixel_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windowed 2-D power spectral density (mean removed, 2-D Hann window) and its frequencies.

    Normalised by the window's energy, so white noise of variance s2 has PSD ``s2 * pixel_mm**2``
    (units: intensity^2 mm^2). Returns ``(psd, fy, fx)`` with frequencies in cycles/mm.
    """
    x = _as_image(image)
    if not pixel_mm > 0:
        raise ValueError(f"pixel_mm must be > 0, got {pixel_mm}")
    w = np.outer(np.hanning(x.shape[0] + 2)[1:-1], np.hanning(x.shape[1] + 2)[1:-1])
    f = np.fft.fft2((x - x.mean()) * w)
    psd = (f.real ** 2 + f.imag ** 2) * pixel_mm ** 2 / float((w ** 2).sum())
    fy = np.fft.fftfreq(x.shape[0], pixel_mm)[:, None]
    fx = np.fft.fftfreq(x.shape[1], pixel_mm)[None, :]
    return psd, np.broadcast_to(fy, psd.shape), np.broadcast_to(fx, psd.shape)


def _radial_mean(values: np.ndarray, fr: np.ndarray, df: float, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``values`` in rings ``((k - 0.5) df, (k + 0.5) df]``, k = 1..n_bins: ``(k * df, means)``."""
    k = np.rint(fr / df).astype(np.int64).ravel()
    keep = (k >= 1) & (k <= n_bins)
    sums = np.bincount(k[keep], weights=values.ravel()[keep], minlength=n_bins + 1)[1:]
    counts = np.bincount(k[keep], minlength=n_bins + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.arange(1, n_bins + 1) * df, sums / counts


def radial_power_spectrum(image: np.ndarray, pixel_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum: ``(frequencies in cycles/mm, power in intensity^2 mm^2)``.

    The image mean is removed and a 2-D Hann window applied (less leakage from the frame's edges);
    the power is normalised by the window's energy (white noise of variance s2 gives ``s2 *
    pixel_mm**2`` at every frequency). Rings are one frequency step wide (``1 / (N * pixel_mm)``,
    N the longer side), up to the Nyquist frequency ``0.5 / pixel_mm``.
    """
    psd, fy, fx = _psd2(image, pixel_mm)
    df = 1.0 / (max(psd.shape) * pixel_mm)
    n_bins = int(np.floor(0.5 / pixel_mm / df + 1e-9))
    return _radial_mean(psd, np.hypot(fy, fx), df, n_bins)


def band_energy_fraction(image: np.ndarray, pixel_mm: float, band: tuple[float, float] = RIB_BAND_CPMM,
                         f_max: float | None = None) -> float:
    """Share of the image's power (mean removed, Hann window) at radial frequencies in ``band``.

    ``band = (f_lo, f_hi)`` in cycles/mm (default :data:`RIB_BAND_CPMM`), ``f_lo <= f < f_hi``; the
    denominator is all power at ``0 < f <= f_max`` (default: the Nyquist frequency ``0.5 /
    pixel_mm``). To compare images of different pixel sizes pass the same ``f_max`` (the lower of
    their Nyquist frequencies).
    """
    lo, hi = float(band[0]), float(band[1])
    if not 0 <= lo < hi:
        raise ValueError(f"band must satisfy 0 <= f_lo < f_hi, got {band}")
    psd, fy, fx = _psd2(image, pixel_mm)
    fr = np.hypot(fy, fx)
    f_max = 0.5 / pixel_mm if f_max is None else float(f_max)
    total = psd[(fr > 0) & (fr <= f_max)].sum()
    if total <= 0:
        return float("nan")
    return float(psd[(fr >= lo) & (fr < hi) & (fr <= f_max)].sum() / total)


def directional_power_ratio(image: np.ndarray, pixel_mm: float,
                            band: tuple[float, float] = RIB_BAND_CPMM, half_angle_deg: float = 30.0) -> float:
    """Power at near-vertical over near-horizontal frequencies in ``band`` (cycles/mm).

    Near-horizontal edges (ribs on a PA film) vary along y, so their power sits at frequencies
    within ``half_angle_deg`` of the vertical axis; the ratio of the mean PSD there to the mean PSD
    within ``half_angle_deg`` of the horizontal axis is > 1 when such edges dominate, ~1 for an
    isotropic texture. Used on RG1 to choose :data:`RIB_BAND_CPMM`.
    """
    psd, fy, fx = _psd2(image, pixel_mm)
    fr = np.hypot(fy, fx)
    ang = np.degrees(np.arctan2(np.abs(fy), np.abs(fx)))
    ring = (fr >= band[0]) & (fr < band[1])
    vert, hor = ring & (ang >= 90.0 - half_angle_deg), ring & (ang <= half_angle_deg)
    if not vert.any() or not hor.any():
        raise ValueError(f"band {band} holds no frequencies of a {psd.shape} image at {pixel_mm} mm/pixel")
    return float(psd[vert].mean() / psd[hor].mean())


def _poly_basis(n: int, order: int) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n] / max(n - 1, 1) - 0.5
    cols = [xx ** i * yy ** j for i in range(order + 1) for j in range(order + 1 - i)]
    return np.stack([c.ravel() for c in cols], axis=1)


def noise_power_spectrum(image: np.ndarray, pixel_mm: float, patch: int = 32, overlap: float = 0.5,
                         detrend_order: int = 2, flat_fraction: float = 0.25,
                         mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Noise power spectrum of the flattest regions: ``(frequencies in cycles/mm, NPS in intensity^2 mm^2)``.

    The standard recipe (IEC 62220-1 in spirit; Dobbins et al., Med. Phys. 33, 1466 (2006)):
    square ROIs of ``patch`` pixels on a grid with fractional ``overlap``, each detrended by a
    least-squares 2-D polynomial of ``detrend_order`` (0: the mean; 2: removes the smooth anatomy
    inside the ROI), then ``NPS = pixel_mm**2 / patch**2 * <|FFT(residual)|^2>`` averaged over ROIs
    and radially (rings one step ``1 / (patch * pixel_mm)`` wide, up to Nyquist). A radiograph has
    no flat field, so only the ``flat_fraction`` of ROIs with the lowest residual variance enter
    the average (the flattest regions); ``mask`` (bool, image-shaped) restricts ROIs to those fully
    inside it. White noise of variance s2 gives ``s2 * pixel_mm**2`` at every frequency (less a few
    per cent at the lowest ring, which the detrending removes, and a selection bias when
    ``flat_fraction < 1``).
    """
    x = _as_image(image)
    if patch < 8 or patch > min(x.shape):
        raise ValueError(f"patch must be in 8..{min(x.shape)} pixels, got {patch}")
    if not 0 < flat_fraction <= 1 or not 0 <= overlap < 1:
        raise ValueError(f"need 0 < flat_fraction <= 1 and 0 <= overlap < 1, got {flat_fraction}, {overlap}")
    step = max(1, round(patch * (1 - overlap)))
    m = None if mask is None else np.asarray(mask, dtype=bool)
    basis = _poly_basis(patch, detrend_order)
    proj = basis @ np.linalg.pinv(basis)  # projector onto the polynomials
    resid = []
    for r0 in range(0, x.shape[0] - patch + 1, step):
        for c0 in range(0, x.shape[1] - patch + 1, step):
            if m is not None and not m[r0:r0 + patch, c0:c0 + patch].all():
                continue
            v = x[r0:r0 + patch, c0:c0 + patch].ravel()
            resid.append(v - proj @ v)
    if not resid:
        raise ValueError("no ROI fits inside the mask: use a smaller patch or a larger mask")
    resid = np.stack(resid)
    keep = max(1, round(flat_fraction * len(resid)))
    flat = resid[np.argsort(resid.var(axis=1), kind="stable")[:keep]].reshape(keep, patch, patch)
    f = np.fft.fft2(flat)
    nps2 = (f.real ** 2 + f.imag ** 2).mean(axis=0) * pixel_mm ** 2 / patch ** 2
    fr = np.hypot(np.fft.fftfreq(patch, pixel_mm)[:, None], np.fft.fftfreq(patch, pixel_mm)[None, :])
    return _radial_mean(nps2, fr, 1.0 / (patch * pixel_mm), patch // 2)


def contrast_normalised(image: np.ndarray) -> np.ndarray:
    """The image rescaled so that its 1st and 99th percentiles become 0 and 1 (linear, not clipped).

    Compares noise power without the display's contrast: RG1 read with its own file window spans only
    0.25-0.92 between its 1st and 99th percentiles (pale), the simulator's films ~0.01-0.99, so an absolute
    NPS in display units mostly measures the window (a factor ~2 in NPS)."""
    x = _as_image(image)
    lo, hi = np.percentile(x, [1.0, 99.0])
    return (x - lo) / max(float(hi - lo), 1e-12)


# ----------------------------------------------------------------------------------------------
# grey levels
# ----------------------------------------------------------------------------------------------
def _values(image: np.ndarray, mask: np.ndarray | None, normalize: bool) -> np.ndarray:
    x = np.asarray(image, dtype=np.float64)
    v = x[np.asarray(mask, dtype=bool)] if mask is not None else x.ravel()
    if v.size == 0:
        raise ValueError("no pixels to compare (empty mask)")
    if normalize:
        lo, hi = np.percentile(v, [1.0, 99.0])
        v = np.clip((v - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    return v


def intensity_histogram_distance(a: np.ndarray, b: np.ndarray, mask_a: np.ndarray | None = None,
                                 mask_b: np.ndarray | None = None, normalize: bool = False) -> float:
    """Wasserstein-1 (earth mover's) distance between the grey-level distributions of two images.

    Over the whole frame by default, or over the pixels inside ``mask_a`` / ``mask_b`` (e.g. the
    lungs). Images are compared as displayed (course convention, [0, 1] bone bright), so the distance
    is in display units: a uniform shift by c gives c. ``normalize=True`` first maps each image's own
    1st-99th percentiles to [0, 1] (clipped), which compares histogram *shapes* and ignores the
    window. The two images may differ in size.
    """
    return float(wasserstein_distance(_values(a, mask_a, normalize), _values(b, mask_b, normalize)))


# ----------------------------------------------------------------------------------------------
# sharpness shortcut
# ----------------------------------------------------------------------------------------------
SHARPNESS_BANDS_CPP: tuple[tuple[float, float], tuple[float, float]] = ((0.25, 0.5), (0.0625, 0.25))
"""(high, mid) bands in cycles/pixel of :func:`sharpness_statistic`."""


def sharpness_statistic(image: np.ndarray) -> float:
    """A blur statistic: log10 of the power at 0.25-0.5 cycles/pixel over the power at 0.0625-0.25.

    Dimensionless and independent of the grey-level scale (a ratio of powers); lower means blurrier.
    Computed on the windowed spectrum of :func:`radial_power_spectrum` (pixel size 1).
    """
    psd, fy, fx = _psd2(image, 1.0)
    fr = np.hypot(fy, fx)
    (h_lo, h_hi), (m_lo, m_hi) = SHARPNESS_BANDS_CPP
    high = psd[(fr >= h_lo) & (fr <= h_hi)].sum()
    mid = psd[(fr >= m_lo) & (fr < m_hi)].sum()
    if mid <= 0 or high <= 0:
        return float("nan")
    return float(np.log10(high / mid))


def patient_from_sharpness_accuracy(stats: np.ndarray, patient_ids: np.ndarray, cv: int = 5,
                                    seed: int = 0) -> dict[str, float]:
    """Cross-validated accuracy of predicting the patient from sharpness statistic(s) alone.

    ``stats``: ``[N]`` or ``[N, D]`` (e.g. :func:`sharpness_statistic` per image); ``patient_ids``:
    ``[N]`` labels (which CT the image came from). A Gaussian naive Bayes classifier (one Gaussian
    per patient and feature: separates patients by the mean *and* the spread of their sharpness)
    is scored by stratified ``cv``-fold cross-validation (shuffled with ``seed``).
    Returns ``accuracy`` (mean over folds), ``accuracy_sd`` (across folds), ``chance`` (the majority
    share, what always guessing the commonest patient scores), ``n`` and ``n_patients``. A simulator
    without a sharpness shortcut keeps ``accuracy`` near ``chance``.
    """
    # heavy: scikit-learn is slow to import and only this function needs it
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.naive_bayes import GaussianNB

    x = np.asarray(stats, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    y = np.asarray(patient_ids)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"stats must be [N] or [N, D] with N = len(patient_ids), got {x.shape} and {y.shape}")
    if not np.isfinite(x).all():
        raise ValueError("stats contain NaN or infinite values")
    _, counts = np.unique(y, return_counts=True)
    if len(counts) < 2 or counts.min() < cv:
        raise ValueError(f"need >= 2 patients with >= cv={cv} images each, got counts {counts.tolist()}")
    folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    scores = cross_val_score(GaussianNB(), x, y, cv=folds)
    return {"accuracy": float(scores.mean()), "accuracy_sd": float(scores.std()),
            "chance": float(counts.max() / counts.sum()), "n": len(y), "n_patients": len(counts)}


# ----------------------------------------------------------------------------------------------
# a simulator's normal films, measured
# ----------------------------------------------------------------------------------------------
FILM_MEASURES: tuple[str, ...] = ("lung", "lung_open", "ctr", "rib", "rib_dir", "w1", "w1_norm", "sharp", "mm",
                                  "view", "patient")
"""Keys of :func:`measure_normal_films`: lung-field fraction (projected lung; without the heart), CTR,
rib-band energy fraction and direction ratio, W1 grey-level distance to the reference (as displayed;
each 1-99 % normalised), sharpness statistic, pixel size, CT view index and patient id."""


def measure_normal_films(sim, n: int, reference: np.ndarray, seed: int = 0, split: str = "train",
                         f_max: float | None = None, each: Callable[[dict], None] | None = None) -> dict[str, np.ndarray]:
    """Every per-film measure of this module on ``n`` normal films of a simulator (``sim.generate(i, split,
    seed, findings=[])``, images ``0..n-1``), against the real ``reference`` image (RG1 in the course).
    Returns :data:`FILM_MEASURES` as arrays of length ``n`` (``patient`` holds ids); ``each(sample)``, when
    given, also sees every generated film (the report takes its spectra there instead of generating twice).
    Used by the realism tests and ``scripts/realism_report.py``."""
    out: dict[str, list] = {k: [] for k in FILM_MEASURES}
    for i in range(n):
        s = sim.generate(i, split, seed, findings=[], keep_masks=False)
        if each is not None:
            each(s)
        img, mm, lung, heart = s["image"], s["mm_per_px"], s["lung_mask"], s["heart_mask"]
        out["lung"].append(lung_field_fraction(lung))
        out["lung_open"].append(lung_field_fraction(lung & ~heart))
        out["ctr"].append(cardiothoracic_ratio(heart, lung))
        out["rib"].append(band_energy_fraction(img, mm, RIB_BAND_CPMM, f_max=f_max))
        out["rib_dir"].append(directional_power_ratio(img, mm, RIB_BAND_CPMM))
        out["w1"].append(intensity_histogram_distance(img, reference))
        out["w1_norm"].append(intensity_histogram_distance(img, reference, normalize=True))
        out["sharp"].append(sharpness_statistic(img))
        out["mm"].append(mm)
        out["view"].append(s["params"]["view"])
        out["patient"].append(s.get("patient", ""))
    return {k: np.asarray(v) if k == "patient" else np.asarray(v, dtype=float) for k, v in out.items()}


# ----------------------------------------------------------------------------------------------
# the real reference
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RG1Reference:
    """RG1 as the course shows it: ``image`` (read-only float32 [size, size], [0, 1], bone bright)
    and ``pixel_mm`` at that size (from :data:`RG1_ASSUMED_SPACING_MM` at full resolution)."""

    image: np.ndarray
    pixel_mm: float
    field_mm: float
    native_px: int


@lru_cache(maxsize=4)
def rg1_reference(size_px: int = 224) -> RG1Reference:
    """RG1 read with :func:`mlcak_lib.dicom.read_dicom` (its own window, MONOCHROME1 inverted), the
    central square kept (:func:`center_crop_square`, 1841 px = 368 mm) and area-resized to
    ``size_px`` (:func:`area_resize`), as notebook 02 does; 224 px gives 1.64 mm/pixel. Cached."""
    square = center_crop_square(read_dicom(rg1_path()).pixels)
    native = int(square.shape[0])
    image = np.ascontiguousarray(area_resize(square, int(size_px)), dtype=np.float32)
    image.setflags(write=False)
    field = native * RG1_ASSUMED_SPACING_MM
    return RG1Reference(image=image, pixel_mm=field / int(size_px), field_mm=field, native_px=native)
