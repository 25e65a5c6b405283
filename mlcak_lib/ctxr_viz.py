"""Figures of notebook 08 (issue 17): a simulated CT study in three orthogonal views next to its AP projection.

Display follows the radiological convention, the one :func:`.ctxr.volumes.ap_projection` already uses: the patient's
right on the viewer's left, superior up, and in the axial view anterior up; the sagittal view has anterior on the
left. Volumes are ``(x, y, z)`` LAS (:mod:`.ctxr.volumes`): axis 0 towards the patient's left, 1 anterior, 2 superior.
:func:`orthogonal_slices` and :func:`slice_point` are pure (tested); the ``show_*`` functions draw on given axes
with :func:`mlcak_lib.viz.draw_boxes` and its class colours (class index = position in :data:`.ctxr.volumes.CT_CLASSES`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np

from .ctxr.volumes import CT_CLASSES, ap_projection, project_box
from .viz import class_color, draw_boxes

VIEWS: tuple[str, ...] = ("axial", "coronal", "sagittal")
#: Each view's (row axis, column axis) in words, for axis labels.
VIEW_AXES: dict[str, tuple[str, str]] = {"axial": ("anterior ↑", "patient's right ← → left"),
                                         "coronal": ("superior ↑", "patient's right ← → left"),
                                         "sagittal": ("superior ↑", "anterior ← → posterior")}
WINDOW_HU: tuple[float, float] = (-1000.0, 400.0)  # the encoder's window (volumes.normalise)


def orthogonal_slices(volume: np.ndarray, point: Sequence[int]) -> dict[str, np.ndarray]:
    """The axial, coronal and sagittal slices of ``volume`` ``(x, y, z)`` LAS through voxel ``point``, each as a
    displayable ``[row, column]`` image (module docstring): axial ``[y, x]`` (anterior first), coronal ``[z, x]``
    and sagittal ``[z, y]`` (superior first, sagittal anterior first)."""
    vol = np.asarray(volume)
    if vol.ndim != 3:
        raise ValueError(f"expected a volume (x, y, z), got shape {vol.shape}")
    x, y, z = (int(np.clip(p, 0, s - 1)) for p, s in zip(point, vol.shape))
    return {"axial": vol[:, :, z].T[::-1],
            "coronal": vol[:, y, :].T[::-1],
            "sagittal": vol[x, ::-1, :].T[::-1]}


def slice_point(lesion=None, shape: Sequence[int] = (64, 64, 64)) -> tuple[int, int, int]:
    """The voxel the three views go through: the lesion's voxel of largest mask cross-section (its centre voxel
    when that lies in the mask), or the volume's centre without a lesion."""
    if lesion is None:
        return tuple(int(s) // 2 for s in shape)
    full = lesion.full_mask()
    centre = tuple(int(np.clip(np.floor(c), 0, s - 1)) for c, s in zip(lesion.centre, full.shape))
    if full[centre]:
        return centre
    idx = np.argwhere(full)
    if not len(idx):
        return centre
    mean = idx.mean(axis=0)
    return tuple(int(v) for v in idx[np.argmin(((idx - mean) ** 2).sum(axis=1))])


def _in_view(point: Sequence[int], shape: Sequence[int]) -> dict[str, tuple[float, float]]:
    """Where ``point`` lies in each view's image, as ``(column, row)`` (the cross-hair)."""
    x, y, z = point
    _, ny, nz = shape
    return {"axial": (x, ny - 1 - y), "coronal": (x, nz - 1 - z), "sagittal": (ny - 1 - y, nz - 1 - z)}


def show_view(ax, volume: np.ndarray, point: Sequence[int], view: str = "coronal", lesion=None,
              window: tuple[float, float] = WINDOW_HU, crosshair: bool = False, labels: bool = True) -> None:
    """Draw one view of ``volume`` (HU) through ``point`` on ``ax``, windowed to ``window``; with a ``lesion``,
    its mask's outline in its class colour; ``labels`` names the view and its directions."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    ax.imshow(orthogonal_slices(volume, point)[view], cmap="gray", vmin=window[0], vmax=window[1],
              interpolation="nearest")
    if lesion is not None:
        mask = orthogonal_slices(lesion.full_mask().astype(float), point)[view]
        if mask.any():
            ax.contour(mask, levels=[0.5], colors=[class_color(CT_CLASSES.index(lesion.label))], linewidths=0.9)
    if crosshair:
        cx, cy = _in_view(point, np.shape(volume))[view]
        ax.axhline(cy, color="y", lw=0.4, alpha=0.6)
        ax.axvline(cx, color="y", lw=0.4, alpha=0.6)
    ax.set_xticks([])
    ax.set_yticks([])
    if labels:
        rows, cols = VIEW_AXES[view]
        ax.set_title(view, fontsize=9)
        ax.set_xlabel(cols, fontsize=7)
        ax.set_ylabel(rows, fontsize=7)
    else:
        ax.set_axis_off()


def show_orthogonal(volume: np.ndarray, point: Sequence[int], axes, lesion=None,
                    window: tuple[float, float] = WINDOW_HU, crosshair: bool = True) -> None:
    """The three views (:data:`VIEWS`) of ``volume`` through ``point`` on three ``axes`` (:func:`show_view`)."""
    for ax, view in zip(axes, VIEWS):
        show_view(ax, volume, point, view, lesion, window, crosshair)


def projection_image(volume: np.ndarray, voxel_mm: float) -> np.ndarray:
    """:func:`.ctxr.volumes.ap_projection` scaled to [0, 1] for display (1st to 99.5th percentile; bone bright)."""
    p = ap_projection(volume, voxel_mm)
    lo, hi = np.percentile(p, [1.0, 99.5])
    return np.clip((p - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def show_projection(study, ax, boxes: bool = True, title: str = "AP projection") -> np.ndarray:
    """Draw a study's AP projection with each lesion's :func:`.volumes.project_box`; returns the boxes ``[k, 4]``."""
    ax.imshow(projection_image(study.volume, study.voxel_mm), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    found = np.array([project_box(les) for les in study.lesions], np.float32).reshape(-1, 4)
    if boxes and len(found):
        draw_boxes(ax, found, [CT_CLASSES.index(les.label) for les in study.lesions], CT_CLASSES, show_labels=False)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return found


def wrap(text: str, width: int = 60) -> str:
    """A report wrapped to ``width`` characters (figure titles, printed reports)."""
    return "\n".join(textwrap.wrap(text, width))


def study_label(study) -> str:
    """``patient · seed · classes`` (or ``normal``) for a figure title."""
    classes = sorted({les.label for les in study.lesions}, key=CT_CLASSES.index)
    return f"{study.patient_id} · study {study.seed} · " + (", ".join(classes) if classes else "normal")
