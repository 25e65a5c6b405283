"""Torch datasets that follow the course's sample contract (introduced in notebook 01; used in 03-06).

Every item is a dict (see CONTRIBUTING.md, "The sample contract"): ``image`` float32 ``[1, H, H]``,
``lowres`` ``{r: [1, r, r]}`` made with :func:`mlcak_lib.resize.area_resize`, ``mlct`` float32
``[C]``, ``mcct`` int64 scalar, ``boxes`` float32 ``[K, 4]``, ``box_labels`` int64 ``[K]``,
``box_mm`` float32 ``[K]``, ``index`` int; optionally ``token_map`` float32 ``[C, g, g]`` and, for a
simulator drawing from several patients (``SynthConfig(patients=...)``), ``patient`` str.
Use :func:`collate_with_boxes` in DataLoaders.

:class:`SynthCXRDataset` wraps the simulator (:mod:`mlcak_lib.synth`). Split sizes per profile
live in :data:`SPLIT_SIZES`. Training loops that want everything in memory call
:meth:`SynthCXRDataset.materialize` (or :func:`generate_split`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .cache import simulator_fingerprint
from .config import cache_dir, get_profile
from .resize import area_resize, check_resolutions
from .synth import SPLITS, SynthConfig, SynthCXR
from .tokens import _check_grid, boxes_to_token_map

SPLIT_SIZES: dict[str, dict[str, int]] = {
    "default": {"train": 3000, "val": 600, "test": 1000},
    "full": {"train": 30000, "val": 5000, "test": 10000},
}
"""Images per split for each profile (the simulator makes ~200+ images/s on one core)."""


def generate_split(split: str = "train", size: int | None = None, seed: int = 0, config: SynthConfig | None = None,
                   profile: str | None = None, progress: bool = False) -> dict:
    """Generate a whole split as stacked NumPy arrays.

    Returns ``images`` float32 ``[N, S, S]``, ``mlct`` float32 ``[N, C]``, ``mcct`` int64 ``[N]`` and
    lists ``boxes``, ``box_labels``, ``box_mm`` (one array per image) and ``patient`` (one id per image),
    plus ``class_names``.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    n = SPLIT_SIZES[get_profile(profile)][split] if size is None else int(size)
    sim = SynthCXR(config)
    S = sim.config.image_size
    images = np.empty((n, S, S), np.float32)
    mlct = np.zeros((n, len(sim.class_names)), np.float32)
    mcct = np.zeros(n, np.int64)
    boxes, labels, mms, patients = [], [], [], []
    it = range(n)
    if progress:
        it = tqdm(it, desc=f"simulating {split}", leave=False)
    for i in it:
        s = sim.generate(i, split, seed, keep_masks=False)
        images[i] = s["image"]
        mlct[i] = s["mlct"]
        mcct[i] = s["mcct"]
        boxes.append(s["boxes"])
        labels.append(s["box_labels"])
        mms.append(s["box_mm"])
        patients.append(s["patient"])
    return {"images": images, "mlct": mlct, "mcct": mcct, "boxes": boxes, "box_labels": labels,
            "box_mm": mms, "patient": patients, "class_names": list(sim.class_names)}


class SynthCXRDataset(Dataset):
    """Simulated chest radiographs as a torch Dataset (sample contract of CONTRIBUTING.md).

    * ``split``: 'train', 'val' or 'test' (disjoint by construction).
    * ``resolutions``: low-resolution views to add under ``lowres`` (area-resized from the image).
    * ``profile`` / ``size``: number of images (``SPLIT_SIZES[profile][split]`` unless ``size``).
    * ``seed``, ``config``: with the split and index they define every pixel.
    * ``cache``: keep the generated split on disk in ``config.cache_dir()/synth/<hash>`` (float16
      memmap) so later runs and notebooks skip generation.
    * ``token_grid``: also return ``token_map`` ``[C, g, g]`` for that grid (rule in mlcak_lib.tokens).
    """

    def __init__(self, split: str = "train", resolutions: Sequence[int] = (28,), profile: str | None = None,
                 size: int | None = None, seed: int = 0, config: SynthConfig | None = None, cache: bool = False,
                 token_grid: int | None = None):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        self.split = split
        self.profile = get_profile(profile)
        self.size = SPLIT_SIZES[self.profile][split] if size is None else int(size)
        if self.size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        self.seed = int(seed)
        self.config = config if config is not None else SynthConfig()
        self.sim = SynthCXR(self.config)
        self.class_names: list[str] = list(self.sim.class_names)
        self.image_size = self.config.image_size
        self.resolutions = check_resolutions(resolutions, self.image_size)
        self.token_grid = token_grid
        if token_grid is not None:
            _check_grid(self.image_size, token_grid)
        self.cache = bool(cache)
        self._store = None  # dict with images memmap + labels when cached/materialized

    # ------------------------------------------------------------ caching
    def cache_key(self) -> str:
        """Settings, simulator source (:func:`mlcak_lib.cache.simulator_fingerprint`), split, seed and size:
        editing the simulator's code can never serve stale images (cache layer 2 of :mod:`mlcak_lib.cache`)."""
        return f"{self.config.config_hash()}-{simulator_fingerprint()}-{self.split}-s{self.seed}-n{self.size}"

    def cache_path(self) -> Path:
        return cache_dir() / "synth" / self.cache_key()

    def _load_or_build_cache(self) -> dict:
        folder = self.cache_path()
        done = folder / "labels.json"
        if not done.is_file():
            data = generate_split(self.split, self.size, self.seed, self.config, progress=True)
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / "images.tmp.npy"
            np.save(tmp, data["images"].astype(np.float16))
            tmp.replace(folder / "images.npy")
            meta = {k: [a.tolist() for a in data[k]] for k in ("boxes", "box_labels", "box_mm")}
            meta.update(mlct=data["mlct"].tolist(), mcct=data["mcct"].tolist(), class_names=data["class_names"],
                        patient=data["patient"])
            (folder / "labels.tmp.json").write_text(json.dumps(meta))
            (folder / "labels.tmp.json").replace(done)
        meta = json.loads(done.read_text())
        return {
            "images": np.load(folder / "images.npy", mmap_mode="r"),
            "mlct": np.asarray(meta["mlct"], np.float32).reshape(self.size, -1),
            "mcct": np.asarray(meta["mcct"], np.int64),
            "boxes": [np.asarray(b, np.float32).reshape(-1, 4) for b in meta["boxes"]],
            "box_labels": [np.asarray(b, np.int64) for b in meta["box_labels"]],
            "box_mm": [np.asarray(b, np.float32) for b in meta["box_mm"]],
            "patient": list(meta["patient"]),
        }

    def _sample(self, index: int) -> dict:
        if self._store is None and self.cache:
            self._store = self._load_or_build_cache()
        if self._store is not None:
            st = self._store
            return {"image": np.asarray(st["images"][index], np.float32), "mlct": st["mlct"][index],
                    "mcct": int(st["mcct"][index]), "boxes": st["boxes"][index],
                    "box_labels": st["box_labels"][index], "box_mm": st["box_mm"][index],
                    "patient": st["patient"][index]}
        return self.sim.generate(index, self.split, self.seed, keep_masks=False)

    # ------------------------------------------------------------ Dataset API
    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for a split of {self.size} images")
        s = self._sample(index)
        image = torch.from_numpy(np.ascontiguousarray(s["image"], dtype=np.float32))[None]
        item = {
            "image": image,
            "lowres": {r: area_resize(image, r) for r in self.resolutions},
            "mlct": torch.as_tensor(s["mlct"], dtype=torch.float32),
            "mcct": torch.tensor(int(s["mcct"]), dtype=torch.int64),
            "boxes": torch.as_tensor(s["boxes"], dtype=torch.float32).reshape(-1, 4),
            "box_labels": torch.as_tensor(s["box_labels"], dtype=torch.int64).reshape(-1),
            "box_mm": torch.as_tensor(s["box_mm"], dtype=torch.float32).reshape(-1),
            "index": index,
        }
        if self.config.patients is not None:  # optional key of the sample contract
            item["patient"] = s["patient"]
        if self.token_grid is not None:
            item["token_map"] = torch.from_numpy(boxes_to_token_map(
                s["boxes"], s["box_labels"], self.image_size, self.token_grid, len(self.class_names)))
        return item

    def materialize(self, resolutions: Sequence[int] | None = None, progress: bool = False) -> dict:
        """The whole split in memory as tensors (fast path for training loops).

        Returns ``images`` ``[N, 1, S, S]``, ``lowres`` ``{r: [N, 1, r, r]}``, ``mlct`` ``[N, C]``,
        ``mcct`` ``[N]`` and lists ``boxes``, ``box_labels``, ``box_mm`` (tensors per image), ``patient`` (ids);
        with ``token_grid`` also ``token_map`` ``[N, C, g, g]``.
        """
        res = self.resolutions if resolutions is None else check_resolutions(resolutions, self.image_size)
        if self._store is None:
            self._store = self._load_or_build_cache() if self.cache else generate_split(
                self.split, self.size, self.seed, self.config, progress=progress)
        st = self._store
        images = torch.from_numpy(np.asarray(st["images"], np.float32))[:, None]
        out = {
            "images": images,
            "lowres": {r: area_resize(images, r) for r in res},
            "mlct": torch.as_tensor(np.asarray(st["mlct"]), dtype=torch.float32),
            "mcct": torch.as_tensor(np.asarray(st["mcct"]), dtype=torch.int64),
            "boxes": [torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4) for b in st["boxes"]],
            "box_labels": [torch.as_tensor(b, dtype=torch.int64) for b in st["box_labels"]],
            "box_mm": [torch.as_tensor(b, dtype=torch.float32) for b in st["box_mm"]],
            "patient": list(st["patient"]),
            "class_names": list(self.class_names),
        }
        if self.token_grid is not None:
            out["token_map"] = torch.from_numpy(np.stack([
                boxes_to_token_map(b, lab, self.image_size, self.token_grid, len(self.class_names))
                for b, lab in zip(st["boxes"], st["box_labels"])]) if self.size else
                np.zeros((0, len(self.class_names), self.token_grid, self.token_grid), np.float32))
        return out


def collate_with_boxes(batch: list[dict]) -> dict:
    """Stack fixed-size tensors of a list of items; keep ``boxes``/``box_labels``/``box_mm`` as lists (one per image)."""
    if not batch:
        raise ValueError("collate_with_boxes got an empty batch")
    out: dict = {}
    for key in batch[0]:
        values = [item[key] for item in batch]
        if key in ("boxes", "box_labels", "box_mm"):
            out[key] = values
        elif key == "lowres":
            out[key] = {r: torch.stack([v[r] for v in values]) for r in values[0]}
        elif key == "index":
            out[key] = torch.tensor(values, dtype=torch.int64)
        elif isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        else:
            out[key] = values
    return out
