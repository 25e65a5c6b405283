"""Token-grid lesion targets from boxes (introduced in notebook 02, used for the local task in 06).

A ViT cuts an ``image_size x image_size`` image into a ``grid x grid`` array of tokens, each
``t = image_size / grid`` pixels wide. :func:`boxes_to_token_map` says, for every class, which
tokens contain a lesion. **The rule** (the same in every notebook):

A token is positive for a box's class when, *on each axis*, the box covers at least
``min_fraction`` of the token's extent -- or of the box's own extent when the box is thinner than
a token on that axis::

    overlap_x >= min_fraction * min(t, box_width)   and   overlap_y >= min_fraction * min(t, box_height)

In addition, the token that contains the box centre is always positive. So a large box marks
the tokens it really covers (a sliver of ``< min_fraction`` of a token at its edge does not
count), a thin box (pleural thickening) marks the row/column of tokens it runs through, and a
box smaller than a token marks the token holding its centre (and a neighbour only if it
straddles the border by at least ``min_fraction`` of itself): **no lesion is ever lost**.

Boxes are ``x0, y0, x1, y1`` in pixels of the image, pixel ``i`` spanning ``[i, i + 1)``.
"""

from __future__ import annotations

import numpy as np

DEFAULT_MIN_FRACTION = 0.25


def _check_grid(image_size: int, grid: int) -> int:
    if not isinstance(grid, (int, np.integer)) or grid <= 0:
        raise ValueError(f"grid must be a positive integer, got {grid!r}")
    if image_size % grid:
        divisors = [g for g in range(1, image_size + 1) if image_size % g == 0]
        raise ValueError(
            f"grid {grid} does not divide image_size {image_size}: tokens must be whole pixels; "
            f"valid grids for {image_size} are {divisors}"
        )
    return image_size // grid


def _check_boxes(boxes, labels, image_size: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) if len(boxes) else np.zeros((0, 4))
    lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(lab) != len(b):
        raise ValueError(f"got {len(b)} boxes but {len(lab)} labels")
    if not np.all(np.isfinite(b)):
        raise ValueError("boxes contain NaN or infinite coordinates")
    bad = np.where((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]))[0]
    if len(bad):
        raise ValueError(f"box {int(bad[0])} has x1 < x0 or y1 < y0: {b[bad[0]].tolist()} (expected x0, y0, x1, y1)")
    tol = 1e-4
    out = np.where((b[:, :2] < -tol).any(1) | (b[:, 2:] > image_size + tol).any(1))[0]
    if len(out):
        raise ValueError(f"box {int(out[0])} {b[out[0]].tolist()} lies outside the {image_size}x{image_size} image")
    badlab = np.where((lab < 0) | (lab >= num_classes))[0]
    if len(badlab):
        raise ValueError(f"label {int(lab[badlab[0]])} is not a class index in [0, {num_classes})")
    return np.clip(b, 0, image_size), lab


def boxes_to_token_map(
    boxes,
    labels,
    image_size: int,
    grid: int,
    num_classes: int,
    min_fraction: float = DEFAULT_MIN_FRACTION,
) -> np.ndarray:
    """Per-class token map ``float32 [num_classes, grid, grid]`` (1 = token contains a lesion), see the module rule."""
    if not 0.0 < min_fraction <= 0.5:
        raise ValueError(f"min_fraction must be in (0, 0.5] so that no box is lost, got {min_fraction}")
    t = _check_grid(int(image_size), grid)
    b, lab = _check_boxes(boxes, labels, int(image_size), int(num_classes))
    out = np.zeros((num_classes, grid, grid), np.float32)
    if len(b) == 0:
        return out
    lo = np.arange(grid) * t  # token edges
    hi = lo + t

    def axis_hits(a0, a1):  # (K, grid) booleans for one axis
        overlap = np.clip(np.minimum(a1[:, None], hi[None]) - np.maximum(a0[:, None], lo[None]), 0, None)
        need = min_fraction * np.minimum(t, (a1 - a0))[:, None]
        hit = (overlap >= need) & (overlap > 0)
        centre = np.clip(((a0 + a1) / 2 // t).astype(int), 0, grid - 1)
        hit[np.arange(len(a0)), centre] = True
        return hit, centre

    hx, cx = axis_hits(b[:, 0], b[:, 2])
    hy, cy = axis_hits(b[:, 1], b[:, 3])
    for k in range(len(b)):
        m = hy[k][:, None] & hx[k][None, :]
        m[cy[k], cx[k]] = True
        out[lab[k]] = np.maximum(out[lab[k]], m)
    return out


def any_lesion_map(token_map: np.ndarray) -> np.ndarray:
    """Collapse a ``[C, g, g]`` (or ``[N, C, g, g]``) token map to "any lesion" ``[g, g]`` (``[N, g, g]``)."""
    return np.asarray(token_map).max(axis=-3)


def boxes_to_any_lesion_map(boxes, image_size: int, grid: int, min_fraction: float = DEFAULT_MIN_FRACTION) -> np.ndarray:
    """Token map ``float32 [grid, grid]`` of any lesion, whatever its class."""
    n = len(boxes)
    return boxes_to_token_map(boxes, np.zeros(n, np.int64), image_size, grid, 1, min_fraction)[0]
