"""The one resize function the course uses: exact area (box) downsampling (introduced in notebook 02).

Each output pixel is the area-weighted mean of the input pixels it covers, so

* the mean intensity of the image is preserved exactly, and
* detail finer than the output pixel is averaged away instead of aliasing into
  false low-frequency patterns (as naive subsampling, ``image[::k, ::k]``, does).

It works for any ratio (224 -> 28 is a factor of 8; 1841 -> 224 is not an integer),
on NumPy arrays ``(H, W)`` and on torch tensors ``(..., H, W)``, and is differentiable.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence, Union

import numpy as np

from .threads import single_thread_blas

ArrayLike = Union[np.ndarray, "torch.Tensor"]  # noqa: F821


@lru_cache(maxsize=64)
def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """Matrix ``(n_out, n_in)`` whose row i holds the overlap of output pixel i with each input pixel.

    Rows sum to one. Used on each axis: ``out = Wy @ image @ Wx.T``.
    """
    if n_out <= 0 or n_in <= 0:
        raise ValueError(f"sizes must be positive, got n_in={n_in}, n_out={n_out}")
    if n_out > n_in:
        raise ValueError(
            f"area_resize only downsamples ({n_in} -> {n_out} would upsample); "
            "use torch.nn.functional.interpolate(mode='bilinear') to upsample."
        )
    edges = np.arange(n_out + 1) * (n_in / n_out)  # output pixel edges in input-pixel units
    lo, hi = edges[:-1, None], edges[1:, None]
    left, right = np.arange(n_in)[None, :], np.arange(1, n_in + 1)[None, :]
    overlap = np.clip(np.minimum(hi, right) - np.maximum(lo, left), 0.0, None)
    weights = overlap / overlap.sum(axis=1, keepdims=True)
    weights.setflags(write=False)
    return weights


def _size_pair(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    if len(size) != 2:
        raise ValueError(f"size must be an int or (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def area_resize(image: ArrayLike, size: int | tuple[int, int]) -> ArrayLike:
    """Downsample ``image`` to ``size`` (int for square, or ``(height, width)``) by exact area averaging.

    NumPy input ``(H, W)`` or ``(..., H, W)`` returns float32 NumPy; a torch tensor returns a
    tensor of the same dtype and device (gradients flow through it).
    """
    out_h, out_w = _size_pair(size)
    in_h, in_w = image.shape[-2], image.shape[-1]
    if (in_h, in_w) == (out_h, out_w):
        return image.astype(np.float32, copy=True) if isinstance(image, np.ndarray) else image.clone()
    wy, wx = area_weights(in_h, out_h), area_weights(in_w, out_w)
    if isinstance(image, np.ndarray):
        img = image.astype(np.float32, copy=False)
        with single_thread_blas():
            return np.matmul(np.matmul(wy.astype(np.float32), img), wx.T.astype(np.float32))
    import torch

    if not isinstance(image, torch.Tensor):
        raise TypeError(f"area_resize expects a NumPy array or a torch tensor, got {type(image).__name__}")
    dtype = image.dtype if image.is_floating_point() else torch.float32
    ty = torch.tensor(wy, dtype=dtype, device=image.device)  # copy: the cached weights are read-only
    tx = torch.tensor(wx, dtype=dtype, device=image.device)
    return ty @ image.to(dtype) @ tx.T


def naive_subsample(image: np.ndarray, size: int) -> np.ndarray:
    """Keep one pixel per block (no averaging): what *not* to do, shown for contrast in notebook 02."""
    in_h, in_w = image.shape[-2:]
    rows = (np.arange(size) * in_h) // size
    cols = (np.arange(size) * in_w) // size
    return image[..., rows[:, None], cols[None, :]].astype(np.float32)


def center_crop_square(image: np.ndarray) -> np.ndarray:
    """Crop the central square of an ``(..., H, W)`` array (keeps the aspect ratio before a square resize)."""
    h, w = image.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return image[..., top : top + side, left : left + side]


def check_resolutions(resolutions: Sequence[int] | int | None, image_size: int) -> tuple[int, ...]:
    """The requested low resolutions as a tuple, each in ``1..image_size`` (:func:`area_resize` only downsamples)."""
    if isinstance(resolutions, (int, np.integer)):
        resolutions = (int(resolutions),)
    res = tuple(int(r) for r in (resolutions or ()))
    bad = [r for r in res if r <= 0 or r > image_size]
    if bad:
        raise ValueError(f"resolutions must lie in 1..{image_size} (the image size; area_resize only downsamples), got {bad}")
    return res
