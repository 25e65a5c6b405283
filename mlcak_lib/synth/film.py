"""Film physics and display processing of the simulator: from a line integral to a displayed PA film (notebook 01).

:func:`expose` turns the attenuation line integral (CT projection plus lesions, calibrated at the CT's
effective energy of about 70 keV) and the bone path length into the displayed image, in this order:

1. **Energy-dependent bone attenuation.** The CT's HU calibrate mu at ~70 keV, where cortical bone
   attenuates ~2.6x water. A chest film's beam (120 kVp, filtered; effective ~50-65 keV) sees bone at
   ~2.9-3.6x water, so bone's excess over water is larger than the HU imply by
   ``(r(E) - 1) / (r(70) - 1) - 1`` (:func:`bone_excess_per_mm`; ``r`` = cortical bone / water mu from
   the NIST XCOM tables, values as remembered: approximate), times the bone's own excess at 70 keV
   (``BONE_HU``, a nominal mean along the path). ``bone_mm`` x that term is added to the line integral,
   so clavicles, scapulae, spine and (where the asset resolves them) ribs read as bone. Assets without
   ``bone_mm`` (the legacy single asset) get no bone term.
2. **Primary and scatter.** ``I = exp(-p)``; scatter is a broad low-pass of the primary times a
   scatter-to-primary ratio (:func:`add_scatter`): as with a grid, ~0.3-0.4 in the lungs, where the
   primary is high, and ~0.5-0.7 behind the heart (measured on the five patients), where the primary is
   low but the low-pass still sees the lungs. Scatter takes contrast out of the spine behind the heart.
3. **Quantum noise and detector blur.** Poisson noise of a fluence in photons/mm^2 (per pixel it
   follows the pixel area; :func:`add_quantum_noise`, a cheap uniform draw of the same variance that the
   blur makes near Gaussian), then a 3-tap detector blur. The fluence is set so that the displayed
   noise power spectrum is near RG1's (:func:`mlcak_lib.realism.noise_power_spectrum`); at ~1.3 mm pixels
   the anatomy's fine texture dominates that spectrum, so the level (~1e6 photons/mm^2 unattenuated, a
   few 1e4 behind the mediastinum) mostly matters at smaller pixels. Measured at 224 px: the five
   patients within 1.5x of RG1 at 0.1-0.28 cycles/mm; the sharper legacy single asset 2.5-3x.
4. **CR/DR processing** (:func:`multiscale`) in the log domain: a Laplacian pyramid (2x2 area down,
   bilinear up: unit gains give back the input exactly) whose band gains follow the band's scale in mm
   (MUSICA-like: the scales above ~5 cm compressed, the rib-scale bands of ~4-25 mm boosted), whose
   detail bands pass a soft knee ``x / (1 + |x| / knee)`` (big edges such as the spine and heart border
   are compressed while small ones, rib edges and vessels, are boosted) and whose ~4-6 mm band is cored
   (small-amplitude texture suppressed, the NPS brought to RG1's). The finest band is left as it is.
5. **Characteristic curve** (:func:`characteristic_curve`): percentile window of the body (direct
   exposure beside it left out, as CR/DR exposure recognition does), then a sigmoid
   (H&D-like toe and shoulder) to float32 in [0, 1], bone bright.

Everything runs at the output size with separable or strided NumPy and small matrix products (about
1.5 ms per 224 px film on one core, no more than the processing it replaced). ``acquisition`` (``SynthConfig``) scales the per-film random
variation of every setting; 0 gives the fixed mid-range film (noise still drawn).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ..resize import area_weights

MU_WATER_PER_MM = 0.02
"""mu of water at the CT's effective energy, as the assets' line integrals use it."""
BONE_HU = 700.0
"""Nominal mean HU along a bone path: the assets' bone is HU > 200 after their blur, mostly trabecular
(vertebral bodies ~250-400 HU) with thin cortical shells (ribs, clavicles) that the blur dilutes."""
XCOM_KEV = np.array([40.0, 50.0, 60.0, 70.0, 80.0, 100.0])
BONE_WATER_MU_RATIO = np.array([4.76, 3.59, 2.94, 2.58, 2.33, 2.09])
"""Cortical bone (ICRU-44, 1.92 g/cm^3) over water linear attenuation at ``XCOM_KEV`` (NIST XCOM, approximate)."""
CT_KEV = 70.0
DIRECT_EXPOSURE_LOG = 0.3
"""-ln(I/I0) below which a pixel is direct exposure (no body: scatter only), left out of the display window."""

# mid-range film settings and the half-width of their per-film variation at acquisition = 1
SETTINGS = {
    "effective_kev": (56.0, 6.0),
    "scatter_to_primary": (0.32, 0.12),  # in the lungs; behind the mediastinum it comes out 2-3x higher
    "log10_photons_per_mm2": (6.1, 0.3),
    "detector_blur": (0.06, 0.04),
    "large_scale_gain": (0.23, 0.06),  # residual of the pyramid (the scales >= ~80 mm)
    "detail_gain": (1.15, 0.2),  # the rib-scale bands (~5-20 mm)
    "knee": (0.1, 0.03),  # soft-knee amplitude of the detail bands (log units)
    "coring": (0.05, 0.015),  # small-amplitude suppression of the bands finer than ~6 mm (log units)
    "curve_slope": (4.0, 0.8),  # sigmoid slope over the window
    "curve_mid": (0.22, 0.05),  # where in the window the curve is steepest
}


def draw_settings(rng, strength: float) -> dict[str, float]:
    """Per-film settings: mid-range ± ``strength`` x half-width, uniform (``strength = 0``: mid-range)."""
    u = rng.uniform(-1.0, 1.0, len(SETTINGS))
    return {k: float(m + strength * h * x) for (k, (m, h)), x in zip(SETTINGS.items(), u)}


def bone_excess_per_mm(kev: float, bone_hu: float | None = None) -> float:
    """Extra line integral per mm of bone at effective energy ``kev`` beyond what the CT's HU give (0 at 70 keV);
    ``bone_hu`` defaults to :data:`BONE_HU`."""
    bone_hu = BONE_HU if bone_hu is None else bone_hu
    r = np.interp(kev, XCOM_KEV, BONE_WATER_MU_RATIO)
    r_ct = np.interp(CT_KEV, XCOM_KEV, BONE_WATER_MU_RATIO)
    return float(MU_WATER_PER_MM * bone_hu / 1000.0 * ((r - 1.0) / (r_ct - 1.0) - 1.0))


@lru_cache(maxsize=16)
def _lowpass_ops(S: int, k: int):
    n = max(S // k, 2)
    return area_weights(S, n).astype(np.float32), up_matrix(n, S)


@lru_cache(maxsize=16)
def up_matrix(n_small: int, n_big: int) -> np.ndarray:
    """Linear interpolation matrix (n_big, n_small), pixel-centre aligned, edge clamped."""
    pos = np.clip((np.arange(n_big) + 0.5) * n_small / n_big - 0.5, 0, n_small - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_small - 1)
    f = pos - lo
    m = np.zeros((n_big, n_small), np.float32)
    m[np.arange(n_big), lo] += 1 - f
    m[np.arange(n_big), hi] += f
    return m


def lowpass(img: np.ndarray, k: int) -> np.ndarray:
    """Area average over ``k`` x ``k`` blocks, bilinear back to full size (a cheap broad blur)."""
    d, u = _lowpass_ops(img.shape[0], k)
    return u @ (d @ img @ d.T) @ u.T


def blur3(img: np.ndarray, a: float) -> np.ndarray:
    """Separable 3-tap blur [a, 1-2a, a] with edge replication."""
    out = img * (1 - 2 * a)
    out[1:] += a * img[:-1]
    out[:-1] += a * img[1:]
    out[0] += a * img[0]
    out[-1] += a * img[-1]
    res = out * (1 - 2 * a)
    res[:, 1:] += a * out[:, :-1]
    res[:, :-1] += a * out[:, 1:]
    res[:, 0] += a * out[:, 0]
    res[:, -1] += a * out[:, -1]
    return res


def add_scatter(primary: np.ndarray, spr: float, kernel_px: int) -> np.ndarray:
    """Primary plus scatter ``spr`` x (``kernel_px`` block low-pass of the primary)."""
    return primary + spr * lowpass(primary, kernel_px)


def add_quantum_noise(intensity: np.ndarray, photons_per_px: float, rng) -> np.ndarray:
    """Poisson noise of ``photons_per_px`` unattenuated photons per pixel (variance ``I / N``), in place.

    Zero-mean uniform noise of that variance (4x cheaper than normal draws; the detector blur that
    follows sums neighbours, so the result is close to Gaussian)."""
    noise = rng.random(intensity.shape, dtype=np.float32)
    noise -= 0.5
    noise *= np.sqrt(intensity)
    noise *= math.sqrt(12.0 / photons_per_px)
    intensity += noise
    return intensity


def _down2(x: np.ndarray) -> np.ndarray:
    """2x2 area average (an odd last row/column is replicated)."""
    if x.shape[0] % 2:
        x = np.concatenate([x, x[-1:]], axis=0)
    if x.shape[1] % 2:
        x = np.concatenate([x, x[:, -1:]], axis=1)
    return 0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2])


def _up2(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear x2 (pixel-centre aligned, edges clamped: weights 3/4, 1/4), cropped to ``shape``.
    Small images by two small matrix products (fewer NumPy calls), large ones by strided slices."""
    m, n = x.shape
    if max(shape) <= 128:
        return up_matrix(m, 2 * m)[: shape[0]] @ x @ up_matrix(n, 2 * n)[: shape[1]].T
    a = 0.75 * x
    r = np.empty((2 * m, n), x.dtype)  # rows
    r[0::2] = a
    r[2::2] += 0.25 * x[:-1]
    r[0] += 0.25 * x[0]
    r[1::2] = a
    r[1:-1:2] += 0.25 * x[1:]
    r[-1] += 0.25 * x[-1]
    r = r[: shape[0]]
    a = 0.75 * r
    out = np.empty((r.shape[0], 2 * n), x.dtype)  # columns
    out[:, 0::2] = a
    out[:, 2::2] += 0.25 * r[:, :-1]
    out[:, 0] += 0.25 * r[:, 0]
    out[:, 1::2] = a
    out[:, 1:-1:2] += 0.25 * r[:, 1:]
    out[:, -1] += 0.25 * r[:, -1]
    return out[:, : shape[1]]


def pyramid_levels(size: int, coarsest: int = 8) -> int:
    """Number of 2x reductions until the image is about ``coarsest`` pixels."""
    return max(math.floor(math.log2(max(size, 2) / coarsest)), 1)


def multiscale(q: np.ndarray, gains, residual_gain: float, knee=None, coring=None) -> np.ndarray:
    """Laplacian-pyramid processing: band ``i`` (finest first, ``len(gains)`` bands) becomes
    ``gains[i] * k(c(x))`` and the coarse residual is multiplied by ``residual_gain``. ``c`` is the coring
    ``x * x^2 / (x^2 + coring[i]^2)`` (suppresses small amplitudes: the noise/texture suppression of CR/DR
    processing, which leaves the larger rib and vessel edges); ``k`` is the soft knee
    ``x / (1 + |x| / knee[i])`` (compresses large edges: spine, heart border). ``None`` / 0 / inf: off.

    With unit gains and neither knee nor coring it returns ``q`` (up to rounding). Only what a band
    changes is carried up the pyramid (``R_i - G_i = up(R_{i+1} - G_{i+1}) + f_i(B_i) - B_i``), so a band
    left as it is (gain 1, no knee, no coring: the finest one, usually) costs one downsampling only."""
    n = len(gains)
    knees = list(knee) if knee is not None else [math.inf] * n
    cores = list(coring) if coring is not None else [0.0] * n
    levels, g = [], q
    for _ in range(n):
        levels.append(g)
        g = _down2(g)
    delta = (residual_gain - 1.0) * g  # processed minus original, at the coarsest level
    for i in reversed(range(n)):
        gi = levels[i]
        delta = _up2(delta, gi.shape)
        gain, c, k = gains[i], cores[i], knees[i]
        if gain != 1.0 or c > 0 or (k and math.isfinite(k)):
            band = gi - _up2(g, gi.shape)
            f = band
            if c > 0:
                sq = band * band
                f = band * sq / (sq + c * c)
            if k and math.isfinite(k):
                f = f / (1.0 + np.abs(f) * (1.0 / k))
            delta += gain * f
            delta -= band
        g = gi
    return q + delta


def band_gains(mm_per_px: float, levels: int, fine: float, detail: float) -> list[float]:
    """Gain of each pyramid band by its scale in mm: ``fine`` below ~3 mm, ``detail`` for ~4-25 mm
    (rib edges, rib width, vessels), fading to 1 at ~50 mm and above."""
    gains = []
    for i in range(levels):
        scale = mm_per_px * 2 ** (i + 1)  # about half the band's central wavelength
        if scale < 3.5:
            gains.append(fine)
        elif scale <= 25.0:
            gains.append(detail)
        else:
            t = min(math.log2(scale / 25.0), 1.0)
            gains.append(detail + t * (1.0 - detail))
    return gains


def window(img: np.ndarray, lo_pct: float = 0.5, hi_pct: float = 99.7, step: int = 4,
           keep: np.ndarray | None = None) -> tuple[float, float]:
    """Percentile window of a ``step``-subsample (``np.partition``: cheaper than ``np.percentile``);
    ``keep`` (bool, same shape as ``img``) restricts it to those pixels when at least 5 % of them are kept."""
    v = img[::step, ::step].ravel()
    if keep is not None:
        k = keep[::step, ::step].ravel()
        if k.sum() >= 0.05 * k.size:
            v = v[k]
    k = [round(pct / 100.0 * (v.size - 1)) for pct in (lo_pct, hi_pct)]
    part = np.partition(v, k)
    return float(part[k[0]]), float(part[k[1]])


def characteristic_curve(t: np.ndarray, slope: float, mid: float) -> np.ndarray:
    """Sigmoid of the windowed signal ``t`` (0 and 1 at the window's ends), rescaled so that t = 0 -> 0
    and t = 1 -> 1, clipped to [0, 1]: a toe, a straight part of slope ~``slope / 4`` at ``mid``, a shoulder."""
    lo = 1.0 / (1.0 + math.exp(slope * mid))
    hi = 1.0 / (1.0 + math.exp(-slope * (1.0 - mid)))
    y = t - mid
    y *= -slope
    np.exp(y, out=y)
    y += 1.0
    np.reciprocal(y, out=y)
    y -= lo
    y *= 1.0 / (hi - lo)
    return np.clip(y, 0.0, 1.0, out=y)


def expose(p: np.ndarray, bone_mm: np.ndarray | None, mm_per_px: float, rng, strength: float,
           keep_stages: bool = False) -> tuple[np.ndarray, dict | None, dict]:
    """A displayed film from the line integral ``p`` (``[S, S]``, lesions included) and the bone path
    ``bone_mm`` (same shape or None): ``(image float32 [0, 1], stages or None, params)``.

    ``stages`` (``keep_stages``): ``intensity`` (detected I/I0 with scatter, noise, blur), ``log``
    (-ln of it) and ``processed`` (after the multi-scale processing, before window and curve)."""
    s = draw_settings(rng, strength)
    S = p.shape[0]
    bone_k = bone_excess_per_mm(s["effective_kev"])
    if bone_mm is not None:
        p = p + bone_k * bone_mm
    intensity = np.exp(-p)
    kernel = max(round(40.0 / mm_per_px), 2)  # ~40 mm blocks: a broad scatter kernel
    intensity = add_scatter(intensity, s["scatter_to_primary"], kernel)
    photons = 10 ** s["log10_photons_per_mm2"] * mm_per_px ** 2
    intensity = add_quantum_noise(intensity, photons, rng)
    intensity = blur3(intensity, s["detector_blur"])
    q = np.maximum(intensity, 1e-4)
    np.log(q, out=q)
    np.negative(q, out=q)
    levels = pyramid_levels(S)
    gains = band_gains(mm_per_px, levels, 1.0, s["detail_gain"])
    # the finest band (< ~3 mm) is left as it is (the detector blur sets it); coring below ~6 mm, knee above
    scale = [mm_per_px * 2 ** (i + 1) for i in range(levels)]
    coring = [s["coring"] if 3.5 <= sc < 6.0 else 0.0 for sc in scale]
    knee = [s["knee"] if sc >= 3.5 else math.inf for sc in scale]
    proc = multiscale(q, gains, s["large_scale_gain"], knee, coring)
    # exposure recognition, as CR/DR histogram analysis does: direct exposure (air beside the body) is
    # left out of the window, so that it does not stretch the window and make the lungs pale
    lo, hi = window(proc, keep=q > DIRECT_EXPOSURE_LOG)
    t = proc - lo
    t *= 1.0 / max(hi - lo, 1e-6)
    img = characteristic_curve(t, s["curve_slope"], s["curve_mid"]).astype(np.float32, copy=False)
    stages = None
    if keep_stages:
        stages = {"intensity": intensity, "log": q, "processed": proc}
    params = dict(s, bone_excess_per_mm=bone_k, photons_per_px=float(photons), band_gains=[float(g) for g in gains])
    return img, stages, params


__all__ = ["SETTINGS", "add_quantum_noise", "add_scatter", "band_gains", "blur3", "bone_excess_per_mm",
           "characteristic_curve", "draw_settings", "expose", "lowpass", "multiscale", "pyramid_levels", "up_matrix",
           "window"]
