"""Measurements of what downsampling does to chest radiographs and lesions (notebook 02).

* :func:`mm_per_pixel`: the physical size of a pixel after resizing a field of view.
* :func:`grating`: a test pattern finer than a 28-px pixel, to show aliasing.
* :func:`sphere_contrast_retention`: peak contrast of a projected sphere kept after area
  resizing, by diameter and output resolution (the simulator's geometry).
* :func:`detectability_study`: a fast scikit-learn classifier per lesion class and resolution on
  simulated images -- which findings survive downsampling.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .resize import area_resize
from .synth import SynthConfig, SynthCXR


def mm_per_pixel(field_mm: float, resolutions: Sequence[int] = (224, 112, 56, 28)) -> dict[int, float]:
    """Pixel size (mm) when a field of view of ``field_mm`` is resized to each resolution."""
    return {int(r): float(field_mm) / int(r) for r in resolutions}


def grating(size: int = 224, period_px: float = 7.0, angle_deg: float = 20.0) -> np.ndarray:
    """A sinusoidal grating in [0, 1] (period in pixels of ``size``); 224 -> 28 keeps periods > 16 px only."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    a = np.deg2rad(angle_deg)
    phase = 2 * np.pi * (x * np.cos(a) + y * np.sin(a)) / period_px
    return (0.5 + 0.5 * np.sin(phase)).astype(np.float32)


def sphere_contrast_retention(diameters_mm: Sequence[float], field_mm: float, native_px: int = 1792,
                              resolutions: Sequence[int] = (224, 112, 56, 28), positions: int = 24,
                              seed: int = 0):
    """Mean peak contrast kept after area resizing a projected sphere (thickness 2*sqrt(r^2-d^2)).

    The sphere is drawn on a fine ``native_px`` grid covering ``field_mm`` at random sub-pixel
    positions, area-resized to each resolution, and its peak compared with the native peak.
    Returns a DataFrame ``diameter_mm, output_px, output_pixel_mm, retained`` (mean over positions).
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    px = field_mm / native_px
    rows = []
    for d in diameters_mm:
        r = d / 2
        half = int(np.ceil(r / px)) + 2
        crop = max(res for res in resolutions)
        kept = {res: [] for res in resolutions}
        for _ in range(positions):
            # a window of the native grid aligned with whole output pixels of every resolution
            block = native_px // min(resolutions)
            win = block * max(1, int(np.ceil(2 * half / block)) + 2)
            cy, cx = (win / 2 + rng.uniform(-block / 2, block / 2, 2))
            yy, xx = np.mgrid[0:win, 0:win] + 0.5
            dist2 = ((yy - cy) ** 2 + (xx - cx) ** 2) * px * px
            t = 2 * np.sqrt(np.clip(r * r - dist2, 0, None))
            peak = t.max()
            for res in resolutions:
                f = native_px // res
                small = t.reshape(win // f, f, win // f, f).mean(axis=(1, 3))
                kept[res].append(small.max() / peak)
        for res in resolutions:
            rows.append({"diameter_mm": d, "output_px": res, "output_pixel_mm": field_mm / res,
                         "retained": float(np.mean(kept[res]))})
        del crop
    return pd.DataFrame(rows)


def _features(image: np.ndarray, lung: np.ndarray, reference: np.ndarray, r: int) -> np.ndarray:
    """Position-invariant features at resolution r: local excess over the normal reference image."""
    from scipy import ndimage

    x = area_resize(image, r).astype(np.float64) - reference
    lung_r = area_resize(lung.astype(np.float32), r) > 0.5
    feats = []
    for s in (0.6, 1.5, 3.5):  # band-pass scales in pixels of the r-image: what r can resolve
        h = ndimage.gaussian_filter(x, s) - ndimage.gaussian_filter(x, 3 * s)
        v = h[lung_r] if lung_r.any() else h.ravel()
        feats += list(np.quantile(v, [0.5, 0.9, 0.99, 1.0]))
    feats += list(area_resize(x.astype(np.float32), 7).ravel())  # global layout (heart, bases)
    return np.asarray(feats)


def detectability_study(classes: Sequence[str], resolutions: Sequence[int] = (224, 112, 56, 28), n: int = 120,
                        seed: int = 0, size_scale: float | Sequence[float] = 1.0, fixed_anatomy: bool = True,
                        config: SynthConfig | None = None):
    """AUROC of a logistic-regression reader telling normal from abnormal images, per class and resolution.

    The reader is fitted on films of the configuration's **training patients** and scored on films of its
    **test patients**, whom it never saw (``config``, default ``SynthConfig()``; a single-patient
    configuration, ``patients=None``, uses its one CT for both). With ``fixed_anatomy`` (default) the
    per-film anatomical variation is off (``anatomy=0``): within a patient only the lesion (random
    position and size), the acquisition and the noise vary, the *best case* for low resolution.
    Features: quantiles of band-passed excess over the mean normal training film inside the lungs, plus a
    7x7 layout. ``n`` normal films make the mean; ``n / 2`` normal and ``n / 2`` abnormal films train and
    as many test. ``size_scale`` (one per class, or one for all) multiplies the drawn lesion sizes.
    Returns a DataFrame ``class, size_scale, median_size_mm, resolution, auroc``.
    """
    import dataclasses

    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scales = [size_scale] * len(classes) if np.isscalar(size_scale) else list(size_scale)
    base = config or SynthConfig()
    if fixed_anatomy:
        base = dataclasses.replace(base, anatomy=0.0)
    half = n // 2
    sim = SynthCXR(base)
    normals = [sim.generate(i, "train", seed, findings=[]) for i in range(n + half)]
    test_normals = [sim.generate(i, "test", seed, findings=[]) for i in range(half)]
    refs = {r: np.mean([area_resize(s["image"], r) for s in normals[:n]], axis=0) for r in resolutions}
    rows = []
    y = np.r_[np.zeros(half), np.ones(half)]
    for k, cls in enumerate(classes):
        sick_sim = SynthCXR(dataclasses.replace(base, size_scale=float(scales[k])))
        first = 100_000 * (k + 1)
        train = normals[n:] + [sick_sim.generate(first + i, "train", seed, findings=[cls]) for i in range(half)]
        test = test_normals + [sick_sim.generate(first + i, "test", seed, findings=[cls]) for i in range(half)]
        sizes = np.concatenate([s["box_mm"] for s in train[half:] + test[half:]])
        for r in resolutions:
            X_train, X_test = (np.stack([_features(s["image"], s["lung_mask"], refs[r], r) for s in cases])
                               for cases in (train, test))
            model = make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=3000))
            model.fit(X_train, y)
            auc = roc_auc_score(y, model.predict_proba(X_test)[:, 1])
            rows.append({"class": cls, "size_scale": float(scales[k]), "median_size_mm": float(np.median(sizes)),
                         "resolution": int(r), "auroc": float(auc)})
    return pd.DataFrame(rows)
