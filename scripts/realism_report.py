"""Realism report: the simulator's normal films measured against the real radiograph RG1.

    python scripts/realism_report.py              # 200 normal cases per setting -> mlcak_lib/data/results/realism_current.{csv,png}
    python scripts/realism_report.py --tag issue12   # the committed after-issue-12 report
    python scripts/realism_report.py --n 50 --tag quick

Two simulator settings (:data:`SETTINGS`): ``single_ct``, the course's default before issue 12 (the
legacy single CT asset with one fixed anatomy), and ``five_patients``, issue 12's simulator with all
five patients and the full anatomical variation.
Normal cases only (``findings=[]``), train split, seed 0, indices 0..n-1, at 224 px with their own
pixel size (``mm_per_px``). RG1 comes from :func:`mlcak_lib.realism.rg1_reference` (224 px,
1.64 mm/pixel, the 0.2 mm spacing assumed in notebook 01). Every measure is a function of
:mod:`mlcak_lib.realism`; this script only gathers and writes them. The figure shows RG1 and one
film of each setting, the radial power spectra, the noise power spectra and the grey-level histograms.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FormatStrFormatter, NullFormatter

from mlcak_lib.config import output_dir
from mlcak_lib.realism import (
    RIB_BAND_CPMM,
    band_energy_fraction,
    contrast_normalised,
    ctr_geometry,
    directional_power_ratio,
    measure_normal_films,
    noise_power_spectrum,
    patient_from_sharpness_accuracy,
    radial_power_spectrum,
    rg1_reference,
    sharpness_statistic,
)
from mlcak_lib.synth import SynthConfig, SynthCXR
from mlcak_lib.synth.patients import PATIENTS

NPS_AT_CPMM = (0.05, 0.10, 0.20, 0.28)
"""Frequencies (cycles/mm) at which the table reports the NPS (all below RG1's 0.304 Nyquist at 224)."""
GRID_CPMM = np.linspace(0.01, 0.30, 59)
"""Common frequency grid for averaging spectra of films with different pixel sizes."""

REFERENCES = {
    "ctr": ("normal adult PA: < 0.50; mean about 0.42-0.46, sd about 0.04-0.05",
            ("Danzer CS, Am J Med Sci 1919;157:513 (definition, 0.5 limit); Nickol K & Wade AJ, Br J Radiol "
            "1982;55:399 (CTR of normal adults by ethnic group, means in the low to mid 0.4s). Quoted from the "
            "literature as remembered, not re-checked offline: verify before making them hard tolerances")),
    "lung": ("no published statistic used; RG1 has no lung mask",
             ("judgement, not a published statistic: the share depends on the framing; the radiographic lung "
             "field (without the heart and the recesses below the domes) is roughly 0.35-0.50 of a frame cut "
             "tight from the apices to the costophrenic angles, roughly 0.25-0.35 of a full 35 x 43 cm PA "
             "field; the simulator's lung_mask is the projected lung, recesses behind heart and domes included")),
    "spectra": ("RG1 (this table)", "pydicom-data RG1_UNCR.dcm, read and resized as in notebooks 01-02"),
    "nps": ("RG1 (this table)", "ROI NPS as in IEC 62220-1 (detrended ROIs), Dobbins et al. Med Phys 2006;33:1466"),
}


def _on_grid(f: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` at frequencies ``f`` interpolated on :data:`GRID_CPMM`; NaN outside ``f``'s range."""
    return np.interp(GRID_CPMM, f, values, left=np.nan, right=np.nan)


SETTINGS = {
    "single_ct": {"patients": None, "anatomy": 0.0},  # the course's default before issue 12: one CT, one anatomy
    "five_patients": {"patients": {"train": PATIENTS}},  # issue 12's default simulator, all five patients
}
"""The settings the report compares (``SynthConfig`` keyword arguments)."""


def measure_setting(name: str, n: int, seed: int, f_max: float, rg1) -> tuple[dict, dict]:
    """Per-image measures (:func:`mlcak_lib.realism.measure_normal_films`) and spectra of ``n`` normal films."""
    sim = SynthCXR(SynthConfig(**SETTINGS[name]))
    spectra, nps_curves, nps_norm, pixels, example = [], [], [], [], {}

    def collect(s: dict) -> None:
        if not example:
            example.update(image=s["image"], lung=s["lung_mask"], heart=s["heart_mask"],
                           ctr=ctr_geometry(s["heart_mask"], s["lung_mask"]))
        f, p = radial_power_spectrum(s["image"], s["mm_per_px"])
        spectra.append(_on_grid(f, p))
        f, nps = noise_power_spectrum(s["image"], s["mm_per_px"])
        nps_curves.append(_on_grid(f, nps))
        f, nps = noise_power_spectrum(contrast_normalised(s["image"]), s["mm_per_px"])
        nps_norm.append(_on_grid(f, nps))
        if len(pixels) < 20:
            pixels.append(s["image"].ravel())

    arrays = measure_normal_films(sim, n, rg1.image, seed=seed, f_max=f_max, each=collect)
    return arrays, {"spectrum": np.array(spectra), "nps": np.array(nps_curves), "nps_norm": np.array(nps_norm),
                    "example": example,
                    "pixels": np.concatenate(pixels)}


def build_table(results: dict, rg1, rg1_curves: dict, f_max: float) -> pd.DataFrame:
    rows = []

    def add(metric, unit, key, rg1_value, ref_key, extra=""):
        row = {"metric": metric, "unit": unit}
        for name, (arrays, _) in results.items():
            v = arrays[key] if isinstance(key, str) else key(arrays, _)
            row[f"sim_{name}_mean"] = float(np.nanmean(v))
            sd = float(np.nanstd(v, ddof=1)) if np.size(v) > 1 else float("nan")
            row[f"sim_{name}_sd"] = 0.0 if sd < 1e-9 * abs(row[f"sim_{name}_mean"]) else sd  # rounding noise
        row["rg1"] = rg1_value
        ref, source = REFERENCES[ref_key] if ref_key else ("", "")
        row["reference"] = ref
        row["source_or_note"] = (source + ("; " if source and extra else "") + extra).strip()
        rows.append(row)

    add("pixel size", "mm", "mm", rg1.pixel_mm, None, "simulator: mm_per_px of each film; RG1: 0.2 mm assumed at 1841 px")
    add("lung field fraction (lung_mask)", "share of frame", "lung", float("nan"), "lung")
    add("lung field fraction (lung_mask minus heart_mask)", "share of frame", "lung_open", float("nan"), "lung")
    add("cardiothoracic ratio, normals", "ratio", "ctr", float("nan"), "ctr",
        "heart_mask column span / widest lung_mask row")
    add(f"rib-band energy fraction {RIB_BAND_CPMM[0]}-{RIB_BAND_CPMM[1]} cyc/mm", "share of power",
        "rib", band_energy_fraction(rg1.image, rg1.pixel_mm, RIB_BAND_CPMM, f_max=f_max), "spectra",
        f"denominator: power at 0 < f <= {f_max:.3f} cyc/mm (RG1's Nyquist at 224)")
    add("rib-band vertical/horizontal power ratio (whole frame)", "ratio", "rib_dir",
        directional_power_ratio(rg1.image, rg1.pixel_mm, RIB_BAND_CPMM), "spectra",
        "> 1 when near-horizontal edges (ribs, diaphragm) dominate; the body's vertical outlines pull it below 1")
    add("grey-level W1 distance to RG1 (as displayed)", "display units", "w1", 0.0, "spectra",
        "whole frame; RG1 shown with its file's own window (centre 15000, width 30000: nearly the full range, "
        "so it is pale, mode ~0.88): this row mostly measures the display choice")
    add("grey-level W1 distance to RG1 (each 1-99 % normalised)", "display units", "w1_norm", 0.0, "spectra",
        "histogram shape only")
    add("sharpness statistic log10(P 0.25-0.5 / P 0.0625-0.25 cyc/px)", "log10 ratio", "sharp",
        sharpness_statistic(rg1.image), "spectra", "per pixel, not per mm: depends on the pixel size")
    for f0 in NPS_AT_CPMM:
        k = int(np.argmin(np.abs(GRID_CPMM - f0)))
        add(f"NPS at {f0:.2f} cyc/mm (flattest 25 % of 32-px ROIs)", "display units^2 mm^2",
            lambda a, c, k=k: c["nps"][:, k], float(rg1_curves["nps"][k]), "nps")
    for f0 in NPS_AT_CPMM:
        k = int(np.argmin(np.abs(GRID_CPMM - f0)))
        add(f"NPS at {f0:.2f} cyc/mm, each film 1-99 % normalised", "normalised units^2 mm^2",
            lambda a, c, k=k: c["nps_norm"][:, k], float(rg1_curves["nps_norm"][k]), "nps",
            "realism.contrast_normalised: the display's contrast taken out (RG1's window is pale)")
    for name, (arrays, _) in results.items():
        who = arrays["patient"] if len(set(arrays["patient"])) > 1 else arrays["view"].astype(int)
        _, counts = np.unique(who, return_counts=True)
        if len(counts) < 2 or counts.min() < 5:  # one view (anatomy=0) or too few films per view
            continue
        acc = patient_from_sharpness_accuracy(arrays["sharp"], who)
        what = "patient" if len(set(arrays["patient"])) > 1 else "CT view (one CT: its views stand in for patients)"
        row = {"metric": f"{what} from sharpness ({name}): 5-fold accuracy", "unit": "accuracy",
               f"sim_{name}_mean": acc["accuracy"], f"sim_{name}_sd": acc["accuracy_sd"], "rg1": float("nan"),
               "reference": f"chance (majority share) {acc['chance']:.3f}",
               "source_or_note": "sd = across the 5 folds; Gaussian naive Bayes on sharpness_statistic"}
        rows.append(row)
    return pd.DataFrame(rows)


def plot(results: dict, rg1, rg1_curves: dict, path: Path) -> None:
    fig, axes = plt.subplots(2, 3, figsize=(13, 8.4))
    colors = {"single_ct": "tab:blue", "five_patients": "tab:orange"}
    images = [("RG1 (real CR), 224 px", rg1.image)] + [
        (f"simulated, {name} setting, train 0", curves["example"]) for name, (_, curves) in results.items()]
    for ax, (title, ex) in zip(axes[0], images):
        ax.imshow(ex if isinstance(ex, np.ndarray) else ex["image"], cmap="gray", vmin=0, vmax=1)
        if isinstance(ex, dict):  # the masks and the two CTR diameters
            ax.contour(ex["lung"], levels=[0.5], colors="tab:cyan", linewidths=0.8)
            ax.contour(ex["heart"], levels=[0.5], colors="tab:red", linewidths=0.8)
            g = ex["ctr"]
            r, t0, t1 = g["thorax"]
            h0, h1 = g["heart_cols"]
            hr = int(np.flatnonzero(ex["heart"].any(axis=1)).mean())
            ax.plot([t0, t1], [r, r], color="tab:cyan", lw=1.5)
            ax.plot([h0, h1], [hr, hr], color="tab:red", lw=1.5)
            title += f"\nCTR {(h1 - h0 + 1) / (t1 - t0 + 1):.2f} (lung mask cyan, heart mask red)"
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    ax = axes[1, 0]
    ax.loglog(GRID_CPMM, rg1_curves["spectrum"], "k", lw=2, label="RG1")
    for name, (_, c) in results.items():
        m = np.nanmean(c["spectrum"], axis=0)
        lo, hi = np.nanpercentile(c["spectrum"], [10, 90], axis=0)
        ax.loglog(GRID_CPMM, m, color=colors.get(name), label=f"sim {name} (mean, 10-90 %)")
        ax.fill_between(GRID_CPMM, lo, hi, color=colors.get(name), alpha=0.2)
    ax.axvspan(*RIB_BAND_CPMM, color="0.85", zorder=0, label="rib band")
    ax.set(xlabel="spatial frequency (cycles/mm)", ylabel="power (display units² · mm²)",
           title="Radial power spectrum (Hann window)")
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    ax.loglog(GRID_CPMM, rg1_curves["nps"], "k", lw=2, label="RG1")
    for name, (_, c) in results.items():
        with warnings.catch_warnings():  # grid points beyond every film's Nyquist frequency are NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nanmedian(c["nps"], axis=0)
        ax.loglog(GRID_CPMM, median, color=colors.get(name), label=f"sim {name} (median)")
    ax.set(xlabel="spatial frequency (cycles/mm)", ylabel="NPS (display units² · mm²)",
           title="Noise power spectrum (flattest 25 % of 32-px ROIs)")
    ax.legend(fontsize=8)
    ax = axes[1, 2]
    bins = np.linspace(0, 1, 51)
    ax.hist(rg1.image.ravel(), bins=bins, density=True, histtype="step", color="k", lw=2, label="RG1")
    for name, (_, c) in results.items():
        ax.hist(c["pixels"], bins=bins, density=True, histtype="step", color=colors.get(name),
                label=f"sim {name} (20 films)")
    ax.set(xlabel="grey level (display, 0 = black, 1 = bone white)", ylabel="density",
           title="Grey-level histogram (whole frame)")
    ax.legend(fontsize=8)
    for ax in axes[1, :2]:  # readable frequency ticks (the range spans about one decade)
        ax.set_xlim(0.009, 0.33)
        ax.set_xticks([0.01, 0.02, 0.05, 0.1, 0.2, 0.3])
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    fig.suptitle("Simulator (normal films) vs the real radiograph RG1, at 224 px", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200, help="normal films per setting")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--tag", default="current", help="output name: realism_<tag>.{csv,png}")
    p.add_argument("--out-dir", default=None, help="folder (default: config.output_dir(), mlcak_lib/data/results/ in a checkout)")
    args = p.parse_args(argv)
    out_dir = Path(args.out_dir) if args.out_dir else output_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    rg1 = rg1_reference(224)
    f_max = 0.5 / rg1.pixel_mm
    f, p_rg1 = radial_power_spectrum(rg1.image, rg1.pixel_mm)
    f_n, nps_rg1 = noise_power_spectrum(rg1.image, rg1.pixel_mm)
    f_nn, nps_rg1_norm = noise_power_spectrum(contrast_normalised(rg1.image), rg1.pixel_mm)
    rg1_curves = {"spectrum": _on_grid(f, p_rg1), "nps": _on_grid(f_n, nps_rg1),
                  "nps_norm": _on_grid(f_nn, nps_rg1_norm)}
    results = {name: measure_setting(name, args.n, args.seed, f_max, rg1) for name in args.settings}
    table = build_table(results, rg1, rg1_curves, f_max)
    csv_path, png_path = out_dir / f"realism_{args.tag}.csv", out_dir / f"realism_{args.tag}.png"
    table.to_csv(csv_path, index=False, float_format="%.5g")
    plot(results, rg1, rg1_curves, png_path)
    with pd.option_context("display.max_columns", 20, "display.width", 200, "display.max_colwidth", 60):
        print(table.drop(columns=["source_or_note"]).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\n{args.n} normal films per setting, {time.time() - t0:.0f} s -> {csv_path.name}, {png_path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
