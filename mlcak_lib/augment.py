"""Augmented training films: how the course's teacher learns what transfers to a patient it never saw (notebook 04).

The simulator's training split holds three patients. A teacher trained on their films as they come learns those
three chests: on new films of the training patients it scores far higher than on the unseen test patient, and its
validation score peaks and falls while the training loss keeps falling. Augmentation makes each training film a
little different every time it is seen, in ways that do not change its labels:

* **geometric** -- a random affine map per film: independent horizontal and vertical scale (a film's
  cardiothoracic ratio is a ratio of two widths, so it survives), a small rotation and a shift. Never a
  left-right flip: the heart and the aortic knob sit on the patient's left, and a flipped film is a different
  (and rare) anatomy. The lesion boxes move with the film, and :class:`Augmented` rebuilds the token targets of
  the local task (:mod:`mlcak_lib.local_task`) and of attention guidance (:mod:`mlcak_lib.guidance`) from the
  moved boxes, so they stay exact;
* **intensity** -- a random gamma, contrast and brightness per film (exposure and processing differ between
  films and machines).

Augmentation is training-time only. Validation and test films are never augmented, so the teacher's scores on
the unseen patient measure what it learnt. The settings are :class:`AugmentSpec`; they enter the trained model's
cache key through :meth:`Augmented.config`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .guidance import AttentionGuidance, lesion_distributions
from .local_task import LocalObjective, local_targets
from .train import FunctionObjective, Objective

__all__ = ["MODES", "AugmentSpec", "random_affine", "warp", "move_boxes", "jitter_intensity", "Augmented"]

#: What :class:`AugmentSpec` ``mode`` may be.
MODES = ("geometric", "intensity", "both")


@dataclass(frozen=True)
class AugmentSpec:
    """The ranges each film's random augmentation is drawn from (uniformly; see the module docstring).

    ``scale``: overall zoom range; ``aspect``: the horizontal scale is ``scale * (1 + a)`` and the vertical
    ``scale * (1 - a)`` with ``a`` in ``[-aspect, aspect]``; ``rotate_deg``: rotation range in degrees;
    ``shift``: shift range as a fraction of the half-width of the film; ``gamma``: ``x ** exp(g)`` with ``g`` in
    ``[-gamma, gamma]``; ``contrast``: factor about the film's mean in ``[1 - contrast, 1 + contrast]``;
    ``brightness``: offset in ``[-brightness, brightness]`` (images in ``[0, 1]``).
    """

    mode: str = "both"
    scale: tuple[float, float] = (0.88, 1.12)
    aspect: float = 0.08
    rotate_deg: float = 6.0
    shift: float = 0.08
    gamma: float = 0.3
    contrast: float = 0.15
    brightness: float = 0.05

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown augmentation mode {self.mode!r}; choose from {', '.join(MODES)}")
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise ValueError(f"scale range must satisfy 0 < low <= high, got {self.scale}")
        if not 0 <= self.aspect < 1 or not 0 <= self.contrast < 1:
            raise ValueError("aspect and contrast must lie in [0, 1)")

    @property
    def geometric(self) -> bool:
        return self.mode in ("geometric", "both")

    @property
    def intensity(self) -> bool:
        return self.mode in ("intensity", "both")

    def config(self) -> dict[str, Any]:
        """A JSON-able description (part of a trained model's cache key)."""
        out = asdict(self)
        out["scale"] = list(self.scale)
        return out


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def random_affine(n: int, spec: AugmentSpec, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(A [n, 2, 2], t [n, 2])`` of ``n`` random forward maps ``p_out = A p_in + t`` in normalised coordinates
    (``[-1, 1]`` across the film, x first)."""
    s = _uniform(n, *spec.scale, gen)
    a = _uniform(n, -spec.aspect, spec.aspect, gen)
    sx, sy = s * (1 + a), s * (1 - a)
    r = torch.deg2rad(_uniform(n, -spec.rotate_deg, spec.rotate_deg, gen))
    t = _uniform(2 * n, -spec.shift, spec.shift, gen).view(n, 2)
    cos, sin = torch.cos(r), torch.sin(r)
    A = torch.stack([torch.stack([sx * cos, -sx * sin], dim=1), torch.stack([sy * sin, sy * cos], dim=1)], dim=1)
    return A, t


def warp(x: Tensor, A: Tensor, t: Tensor) -> Tensor:
    """Films ``x`` ``[B, 1, H, W]`` moved by the forward maps ``(A, t)`` of :func:`random_affine` (bilinear; what
    comes in from outside the film repeats its edge)."""
    inv = torch.linalg.inv(A)
    theta = torch.cat([inv, -(inv @ t.unsqueeze(-1))], dim=2)  # output -> input, what affine_grid wants
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def move_boxes(boxes: Any, A: Tensor, t: Tensor, size: int) -> np.ndarray:
    """Pixel boxes ``[K, 4]`` (x0, y0, x1, y1) of a ``size``-pixel film under one forward map ``(A [2, 2], t [2])``:
    the box around the four moved corners, clipped to the film."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(b):
        return b.astype(np.float32)
    u = 2 * b[:, [0, 2, 0, 2]] / size - 1
    v = 2 * b[:, [1, 1, 3, 3]] / size - 1
    m, s = A.double().numpy(), t.double().numpy()
    px = (m[0, 0] * u + m[0, 1] * v + s[0] + 1) * size / 2
    py = (m[1, 0] * u + m[1, 1] * v + s[1] + 1) * size / 2
    out = np.stack([px.min(1), py.min(1), px.max(1), py.max(1)], axis=1).clip(0, size)
    return out.astype(np.float32)


def jitter_intensity(x: Tensor, spec: AugmentSpec, gen: torch.Generator) -> Tensor:
    """Films ``x`` in ``[0, 1]`` with a random gamma, then contrast about each film's mean and brightness, per film;
    the result stays in ``[0, 1]``."""
    n = len(x)
    g = torch.exp(_uniform(n, -spec.gamma, spec.gamma, gen)).view(n, 1, 1, 1).to(x.dtype)
    c = _uniform(n, 1 - spec.contrast, 1 + spec.contrast, gen).view(n, 1, 1, 1).to(x.dtype)
    b = _uniform(n, -spec.brightness, spec.brightness, gen).view(n, 1, 1, 1).to(x.dtype)
    x = x.clamp(0, 1) ** g
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * c + mean + b).clamp(0, 1)


class Augmented(Objective):
    """``base`` trained on augmented films (see the module docstring); the loss is the base's.

    ``forward`` draws each film's augmentation from its own generator (seeded with ``10_000 + seed``, so the
    batch order of :func:`mlcak_lib.train.fit` and the augmentation are reproducible apart), moves the films and,
    under a geometric map, their boxes; the rows of the batch in every wrapped :class:`LocalObjective` and
    :class:`AttentionGuidance` are swapped for the targets of the moved boxes until ``__call__`` has used them,
    then restored. History parts: the base's.
    """

    def __init__(self, base: Any, spec: AugmentSpec | None = None, seed: int = 0) -> None:
        if not isinstance(base, Objective):
            base = FunctionObjective(base)
        self.base = base
        self.spec = spec or AugmentSpec()
        self.seed = int(seed)
        self.gen = torch.Generator().manual_seed(10_000 + self.seed)
        self._swapped: list[tuple[Objective, Tensor, Tensor]] = []
        self._train: Any = None
        self._grid = 0

    def setup(self, model: nn.Module, train: Any) -> None:
        self.base.setup(model, train)
        self._train, self._grid = train, int(getattr(model, "grid", 0))
        self.gen = torch.Generator().manual_seed(10_000 + self.seed)

    def target_objectives(self) -> Iterator[Objective]:
        """The wrapped objectives whose token targets follow the boxes."""
        obj: Any = self.base
        while obj is not None:
            if isinstance(obj, (LocalObjective, AttentionGuidance)):
                yield obj
            obj = getattr(obj, "base", None)

    def forward(self, model: nn.Module, batch: Mapping[str, Any]) -> Mapping[str, Tensor]:
        x = batch["x"]
        if self.spec.geometric:
            A, t = random_affine(len(x), self.spec, self.gen)
            x = warp(x, A.to(x.device), t.to(x.device))
            self._swap_targets(batch["index"], A, t)
        if self.spec.intensity:
            x = jitter_intensity(x, self.spec, self.gen)
        return self.base.forward(model, dict(batch, x=x))

    def _swap_targets(self, index: Tensor, A: Tensor, t: Tensor) -> None:
        objectives = list(self.target_objectives())
        if not objectives:
            return
        split = self._train
        if split is None:
            raise RuntimeError("Augmented.setup(model, train) must run before the first step")
        num_classes = len(split.class_names)
        positions = index.tolist()
        labels = [split.box_labels[i] for i in positions]
        for obj in objectives:
            size = obj.image_size  # the boxes' pixel frame; the map is in normalised coordinates, any resolution
            moved = [move_boxes(split.boxes[i], A[k], t[k], size) for k, i in enumerate(positions)]
            if isinstance(obj, LocalObjective):
                rows = torch.stack([local_targets(b, lab, size, self._grid, num_classes)
                                    for b, lab in zip(moved, labels)])
            else:
                rows = lesion_distributions(moved, labels, num_classes, size, self._grid)
            idx = index.to(obj.targets.device)
            self._swapped.append((obj, idx, obj.targets[idx].clone()))
            obj.targets[idx] = rows.to(obj.targets.dtype).to(obj.targets.device)

    def __call__(self, batch: Mapping[str, Any], outputs: Mapping[str, Tensor], model: nn.Module):
        try:
            return self.base(batch, outputs, model)
        finally:
            for obj, idx, rows in reversed(self._swapped):
                obj.targets[idx] = rows
            self._swapped.clear()

    def config(self) -> dict[str, Any]:
        return {**self.base.config(), "augment": {**self.spec.config(), "seed_offset": 10_000}}
