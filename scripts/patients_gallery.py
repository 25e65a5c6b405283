#!/usr/bin/env python
"""Look at the simulator's five patients side by side (issue 12; the cohort is introduced in notebook 01).

Writes ``/tmp/patients_gallery.png`` (not committed): row 1, one film per patient without simulated
findings (the real tumours of lidc0001 and the Lung-PET-CT-Dx patients are masked out of the assets; a
real finding recorded as known would be boxed in its class colour); rows 2-3, the same patients with simulated lesions. Prints per patient the display statistics
that make the five comparable or not (field of view, lung-field and mediastinum grey levels).

Usage: ``python scripts/patients_gallery.py [--out /tmp/patients_gallery.png] [--n 40]``
"""

from __future__ import annotations

import argparse

import numpy as np

LESION_ROWS = (("Nodule/Mass", "Pleural effusion"), ("Cardiomegaly", "Pneumothorax", "Lung Opacity"))


def patient_stats(sim, patient: str, n: int) -> dict:
    """Mean over ``n`` films without simulated findings: field of view, grey levels of lung and heart."""
    fov, lung, heart, mean = [], [], [], []
    for i in range(n):
        s = sim.generate(i, "train", 0, findings=[])
        img = s["image"]
        fov.append(s["params"]["fov_mm"])
        lung.append(float(np.median(img[s["lung_mask"] & ~s["heart_mask"]])))
        heart.append(float(np.median(img[s["heart_mask"]])) if s["heart_mask"].any() else np.nan)
        mean.append(float(img.mean()))
    return {"patient": patient, "fov_mm": np.mean(fov), "lung_grey": np.mean(lung), "heart_grey": np.nanmean(heart),
            "image_mean": np.mean(mean)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="/tmp/patients_gallery.png")
    ap.add_argument("--n", type=int, default=40, help="films per patient for the statistics")
    ap.add_argument("--index", type=int, default=0)
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlcak_lib.synth import SynthConfig, SynthCXR
    from mlcak_lib.synth.patients import PATIENTS
    from mlcak_lib.viz import draw_boxes, show_radiograph

    fig, axes = plt.subplots(1 + len(LESION_ROWS), len(PATIENTS), figsize=(2.8 * len(PATIENTS), 3.0 * (1 + len(LESION_ROWS))))
    for col, pid in enumerate(PATIENTS):
        cfg = SynthConfig(patients={"train": (pid,)})
        sim = SynthCXR(cfg)
        rows = [()] + list(LESION_ROWS)
        for row, findings in enumerate(rows):
            s = sim.generate(args.index, "train", 0, findings=list(findings))
            ax = axes[row, col]
            mm = s["mm_per_px"]
            show_radiograph(s["image"], ax=ax, spacing_mm=(mm, mm), scalebar_mm=50)
            draw_boxes(ax, s["boxes"], s["box_labels"], list(cfg.classes), show_labels=False)
            label = "no simulated finding" if not findings else " + ".join(findings)
            known = ", ".join(s["params"]["known_findings"])
            ax.set_title(f"{pid}\n{label}{' | real: ' + known if known else ''}\nFOV {s['params']['fov_mm']:.0f} mm",
                         fontsize=7)
        st = patient_stats(sim, pid, args.n)
        print(f"{pid:14s} fov {st['fov_mm']:5.0f} mm  lung grey {st['lung_grey']:.3f}  heart grey "
              f"{st['heart_grey']:.3f}  image mean {st['image_mean']:.3f}")
    fig.suptitle("SIMULATED films, one column per patient (patient's right on the viewer's left)", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
