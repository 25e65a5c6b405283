"""Notebook 08's data (issue 17): simulated CT studies with reports, split by patient, and a separate X-ray pool.

* :func:`ct_split` -- ``n`` studies of one split (``train``/``val``/``test``) from :func:`.volumes.simulate_study`:
  study ``i`` belongs to patient ``i mod len(patients)`` of the split (``synth.config.PATIENT_SPLITS``, so the test
  patient is never in training) and has study seed ``i``; its report is :func:`.reports.render` of its findings
  with phrasing seed ``i`` (several phrasings per finding); ``labels`` is multi-hot over :data:`.volumes.CT_CLASSES`.
* :func:`xray_pool` -- the X-ray pool the CT studies retrieve from: ``n`` films of the radiograph simulator
  (``synth.SynthCXR``, its default settings: the data the course's teacher was trained on) drawn from the
  *training* patients with a seed of their own (:data:`POOL_SEED`), so they are not the teacher's training films
  and never the CT test patient. Each film's report comes from :func:`.films.findings_from_sample`; with an expert
  given, each film's expert embedding too (:func:`expert_embeddings`, the frozen expert's class-token feature).

**Anatomical variation** (:func:`vary_anatomy`, the course's choice, as the radiograph simulator varies each
film): every study's volume is resampled with its own random affine (per-axis scale 0.92-1.08, a rotation of up
to 6 degrees about the body axis, a shift of up to 2 voxels; air outside), seeded by the study, so two normal
studies of one patient are not the same volume and a model cannot just learn three anatomies by heart.

Documented choices: volumes are windowed to [0, 1] (:func:`.volumes.normalise`, -1000..400 HU) and averaged
2 x 2 x 2 to 32^3 voxels of 10.6 mm by default (``input_size``): a CPU budget (a training step on a batch of 32
costs 0.06 s on one core at 32^3, 0.6 s at 64^3); nodules under about 10 mm fade at that grid, as on a
low-resolution film. Everything is cached under ``<cache>/ctxr/`` (:func:`mlcak_lib.config.cache_dir`) keyed by
:func:`.keys.ctxr_fingerprint`, the CT volumes' checksums and the settings, so a rerun loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..cache import stable_hash
from ..config import cache_dir
from ..synth.config import PATIENT_SPLITS, SynthConfig
from ..synth.generator import SynthCXR
from .films import findings_from_sample
from .keys import ctxr_fingerprint
from .reports import Findings, parse, render
from .volumes import CT_CLASSES, normalise, simulate_study, volume_sha256s

PATIENT_PRESET = "by_patient"
GRID = 64  # the volumes' grid (voxels per axis)
POOL_SPLIT, POOL_SEED = "train", 17_017  # the X-ray pool: training patients, a seed the teacher never saw
EXPERT_RESOLUTION = 224


def split_patients(split: str) -> tuple[str, ...]:
    """The CT patients of ``split`` (``synth.config.PATIENT_SPLITS["by_patient"]``)."""
    table = PATIENT_SPLITS[PATIENT_PRESET]
    if split not in table:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(table)}")
    return tuple(table[split])


@dataclass
class CTSplit:
    """One split of CT studies: ``volumes`` ``[n, 1, s, s, s]`` float16 in [0, 1] (``.float()`` a batch), ``reports``, ``findings``,
    ``labels`` ``[n, len(CT_CLASSES)]`` float32, ``patients`` and study ``seeds``; ``name`` is the split."""

    volumes: torch.Tensor
    reports: list[str]
    findings: list[Findings]
    labels: torch.Tensor
    patients: list[str]
    seeds: list[int]
    name: str = ""

    def __len__(self) -> int:
        return len(self.reports)

    @property
    def class_names(self) -> tuple[str, ...]:
        return CT_CLASSES


def multi_hot(findings: Sequence[Findings], classes: Sequence[str] = CT_CLASSES) -> torch.Tensor:
    """``[n, len(classes)]`` float32: 1 where a study's findings hold the class."""
    out = torch.zeros(len(findings), len(classes))
    for i, f in enumerate(findings):
        for label in f.labels:
            if label in classes:
                out[i, list(classes).index(label)] = 1.0
    return out


def downsample(volume: np.ndarray, size: int) -> torch.Tensor:
    """A volume (``[s, s, s]``, any values) averaged down to ``size`` voxels per axis: ``[1, size, size, size]``."""
    t = torch.as_tensor(np.asarray(volume, np.float32))[None, None]
    if t.shape[-1] % size:
        raise ValueError(f"input_size {size} must divide the grid of {t.shape[-1]} voxels")
    return F.avg_pool3d(t, t.shape[-1] // size)[0] if t.shape[-1] != size else t[0]


def _cached(kind: str, key: dict[str, Any], build: Callable[[], dict[str, Any]], folder: str | Path | None) -> dict:
    """``build()`` once per ``key`` under ``<cache>/ctxr/<kind>-<hash>.pt`` (tensors, lists of str, dicts)."""
    path = cache_dir(folder) / "ctxr" / f"{kind}-{stable_hash(key, 16)}.pt"
    if path.exists():
        return torch.load(path, map_location="cpu", weights_only=True)
    data = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(data, tmp)
    tmp.replace(path)
    return data


#: :func:`vary_anatomy`'s ranges: per-axis scale, rotation about the body axis (degrees), shift (voxels).
ANATOMY: dict[str, float] = {"scale": 0.08, "rotate_deg": 6.0, "shift_vox": 2.0}
ANATOMY_SEED = 30_303


def vary_anatomy(volume: np.ndarray, rng: np.random.Generator, ranges: dict[str, float] = ANATOMY,
                 air_hu: float = -1000.0) -> np.ndarray:
    """``volume`` ``(x, y, z)`` (HU) resampled with a random affine about its centre (module docstring): scale
    ``1 ± ranges["scale"]`` per axis, a rotation in the x-y plane (about the superior axis) of up to
    ``ranges["rotate_deg"]``, a shift of up to ``ranges["shift_vox"]`` per axis; trilinear, ``air_hu`` outside."""
    from scipy.ndimage import affine_transform

    scale = 1.0 + rng.uniform(-ranges["scale"], ranges["scale"], 3)
    angle = np.deg2rad(rng.uniform(-ranges["rotate_deg"], ranges["rotate_deg"]))
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    matrix = rotation @ np.diag(1.0 / scale)  # output voxel -> input voxel (about the centre)
    centre = (np.asarray(volume.shape, float) - 1) / 2
    offset = centre - matrix @ centre + rng.uniform(-ranges["shift_vox"], ranges["shift_vox"], 3)
    return affine_transform(np.asarray(volume, np.float32), matrix, offset, order=1, mode="constant", cval=air_hu)


def ct_data_key(split: str, n: int, input_size: int) -> dict[str, Any]:
    """What identifies a cached CT split (and enters the CT models' keys through :mod:`.recipe`)."""
    return {"split": split, "n": int(n), "input_size": int(input_size), "patients": split_patients(split),
            "grid": GRID, "window_hu": (-1000.0, 400.0), "anatomy": dict(ANATOMY, seed=ANATOMY_SEED),
            "code": ctxr_fingerprint(), "volumes": volume_sha256s()}


def ct_split(split: str, n: int, input_size: int = 32, cache_folder: str | Path | None = None,
             progress: bool = False) -> CTSplit:
    """``n`` CT studies of ``split`` (module docstring), simulated once and then loaded from the cache."""
    if n < 1:
        raise ValueError(f"a CT split needs at least one study, got n={n}")
    patients = split_patients(split)

    def build() -> dict[str, Any]:
        vols, reports, who = [], [], []
        for i in tqdm(range(n), desc=f"CT studies ({split})", disable=not progress, leave=False):
            pid = patients[i % len(patients)]
            study = simulate_study(pid, i)
            varied = vary_anatomy(study.volume, np.random.default_rng([ANATOMY_SEED, i]))
            vols.append(downsample(normalise(varied), input_size))
            reports.append(render(study.findings, seed=i))
            who.append(pid)
        return {"volumes": torch.stack(vols).half(), "reports": reports, "patients": who}

    data = _cached("ct", ct_data_key(split, n, input_size), build, cache_folder)
    findings = [parse(r) for r in data["reports"]]
    return CTSplit(data["volumes"], list(data["reports"]), findings, multi_hot(findings), list(data["patients"]),
                   list(range(n)), split)


@dataclass
class XRayPool:
    """The X-ray pool: ``reports``, ``findings``, ``patients`` and (with an expert) ``embeddings`` ``[n, D]``."""

    reports: list[str]
    findings: list[Findings]
    patients: list[str]
    embeddings: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.reports)


@torch.no_grad()
def expert_embeddings(expert: nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """The frozen expert's embedding of films ``[n, 1, 224, 224]`` in [0, 1]: its class token after the final norm
    (``forward_tokens(x)[:, 0]``, the feature its heads read), in eval mode; ``[n, D]`` float32."""
    if not hasattr(expert, "forward_tokens"):
        raise TypeError("the expert must be a course ViT (mlcak_lib.models.MLCAKViT) with forward_tokens()")
    expert.eval()
    return torch.cat([expert.forward_tokens(images[i:i + batch_size])[:, 0].float()
                      for i in range(0, len(images), batch_size)])


def xray_pool(n: int, expert: nn.Module | None = None, expert_id: str | None = None,
              cache_folder: str | Path | None = None, progress: bool = False, chunk: int = 64) -> XRayPool:
    """``n`` simulated films with reports and, when ``expert`` is given, their expert embeddings (module docstring).

    ``expert_id`` names the expert in the cache key (the teacher's ``info["hash"]``): required with ``expert``.
    """
    if n < 1:
        raise ValueError(f"the X-ray pool needs at least one film, got n={n}")
    if expert is not None and not expert_id:
        raise ValueError("pass expert_id (e.g. the teacher's info['hash']) with the expert: it keys the cache")
    sim = SynthCXR(SynthConfig())
    key = {"n": int(n), "split": POOL_SPLIT, "seed": POOL_SEED, "synth": sim.config.config_hash(),
           "code": ctxr_fingerprint(), "expert": expert_id if expert is not None else None}

    def build() -> dict[str, Any]:
        reports, patients, embs = [], [], []
        bar = tqdm(total=n, desc="X-ray pool", disable=not progress, leave=False)
        for start in range(0, n, chunk):
            samples = [sim.generate(i, POOL_SPLIT, POOL_SEED, keep_masks=True) for i in range(start, min(n, start + chunk))]
            reports += [render(findings_from_sample(s, sim.class_names), seed=start + j) for j, s in enumerate(samples)]
            patients += [str(s["patient"]) for s in samples]
            if expert is not None:
                images = torch.from_numpy(np.stack([s["image"] for s in samples]).astype(np.float32))[:, None]
                embs.append(expert_embeddings(expert, images))
            bar.update(len(samples))
        bar.close()
        return {"reports": reports, "patients": patients, "embeddings": torch.cat(embs) if embs else torch.zeros(0)}

    data = _cached("pool", key, build, cache_folder)
    emb = data["embeddings"] if expert is not None else None
    return XRayPool(list(data["reports"]), [parse(r) for r in data["reports"]], list(data["patients"]), emb)


def describe(split: CTSplit) -> dict[str, Any]:
    """Counts of a split for a notebook's check cell: studies, patients, normal studies and positives per class."""
    counts = split.labels.sum(dim=0).int().tolist()
    return {"studies": len(split), "patients": sorted(set(split.patients)),
            "normal": int(sum(f.normal for f in split.findings)), **dict(zip(CT_CLASSES, counts))}
