"""Plotting helpers for radiographs: display, boxes, galleries (introduced in notebook 01).

Course images are float32 in [0, 1], bone bright, so every display uses the gray colour map
with ``vmin=0, vmax=1`` unless told otherwise; pixels keep their physical aspect ratio when the
spacing is known, and a scale bar shows millimetres.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .resize import area_resize

# A fixed colour per class index (colour-blind friendly first, then more), so the same finding
# has the same colour in every figure of the course.
CLASS_COLORS: tuple[str, ...] = (
    "#e69f00",  # orange
    "#56b4e9",  # sky blue
    "#009e73",  # bluish green
    "#f0e442",  # yellow
    "#0072b2",  # blue
    "#d55e00",  # vermillion
    "#cc79a7",  # reddish purple
    "#ff6f91",  # pink
    "#7fdc4a",  # light green
    "#b07aa1",  # mauve
    "#9c755f",  # brown
    "#bab0ac",  # grey
    "#4e79a7",  # steel blue
    "#f28e2b",  # light orange
    "#59a14f",  # green
    "#e15759",  # red
)


def class_color(index: int) -> str:
    """The course's fixed colour for class ``index`` (cycles after 16 classes)."""
    return CLASS_COLORS[int(index) % len(CLASS_COLORS)]


def _to_numpy(image) -> np.ndarray:
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image (or [1, H, W]), got shape {image.shape}")
    return image


def display_copy(image, spacing_mm: tuple[float, float] | None = None, max_side: int = 512):
    """A smaller copy for display (``area_resize``) and its pixel spacing.

    Returns ``(small, spacing)``: the image shrunk so its longer side is at most ``max_side``
    (aspect ratio kept), and ``spacing_mm`` scaled by the same factors (None stays None).
    """
    image = _to_numpy(image)
    h, w = image.shape
    scale = min(1.0, max_side / max(h, w))
    out_h, out_w = max(1, round(h * scale)), max(1, round(w * scale))
    small = area_resize(image, (out_h, out_w)) if (out_h, out_w) != (h, w) else image.astype(np.float32)
    if spacing_mm is None:
        return small, None
    return small, (spacing_mm[0] * h / out_h, spacing_mm[1] * w / out_w)


def add_scalebar(ax, spacing_mm: tuple[float, float], length_mm: float = 50, color: str = "white", loc: str = "lower right"):
    """Draw a horizontal scale bar of ``length_mm`` millimetres on an image axis (column spacing used)."""
    from matplotlib import patheffects
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    length_px = length_mm / float(spacing_mm[1])
    bar = AnchoredSizeBar(
        ax.transData,
        length_px,
        f"{length_mm:g} mm",
        loc,
        pad=0.4,
        borderpad=0.6,
        sep=3,
        color=color,
        frameon=False,
        size_vertical=max(length_px / 25, 1.0),
        fontproperties={"size": 8},
    )
    bar.set_gid("scalebar")
    for child in bar.txt_label.get_children():
        child.set_path_effects([patheffects.withStroke(linewidth=2, foreground="black")])
    ax.add_artist(bar)
    return bar


def show_radiograph(
    image,
    ax=None,
    spacing_mm: tuple[float, float] | None = None,
    title: str | None = None,
    scalebar_mm: float | None = 50,
    vmin: float = 0.0,
    vmax: float = 1.0,
    cmap: str = "gray",
    axis_off: bool = True,
    **imshow_kwargs,
):
    """Show a radiograph: gray, ``vmin..vmax`` (default 0..1), true aspect, scale bar, axis off.

    ``spacing_mm`` is ``(row spacing, column spacing)`` of *this* array (after any resizing);
    non-square pixels are drawn with their physical aspect ratio. Returns the AxesImage.
    """
    import matplotlib.pyplot as plt

    image = _to_numpy(image)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4 * image.shape[0] / image.shape[1]))
    aspect = 1.0 if spacing_mm is None else float(spacing_mm[0]) / float(spacing_mm[1])
    shown = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, aspect=aspect, interpolation="antialiased", **imshow_kwargs)
    if spacing_mm is not None and scalebar_mm:
        add_scalebar(ax, spacing_mm, scalebar_mm)
    if title:
        ax.set_title(title, fontsize=9)
    if axis_off:
        ax.set_axis_off()
    return shown


def draw_boxes(
    ax,
    boxes,
    labels: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    linewidth: float = 1.2,
    show_labels: bool = True,
    fontsize: float = 6.5,
    color: str | None = None,
):
    """Draw ``x0, y0, x1, y1`` boxes (pixels of the shown image) with one fixed colour per class.

    ``labels`` are class indices (colour from :func:`class_color`); ``class_names`` turns them
    into text. Without labels every box uses ``color`` (default: the colour of class 0).
    Returns the list of Rectangle patches.
    """
    from matplotlib.patches import Rectangle

    boxes = np.asarray(boxes.detach().cpu() if hasattr(boxes, "detach") else boxes, dtype=float).reshape(-1, 4)
    if labels is not None:
        labels = [int(v) for v in (labels.detach().cpu().tolist() if hasattr(labels, "detach") else labels)]
        if len(labels) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(labels)} labels")
    patches = []
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        label = labels[k] if labels is not None else None
        edge = color or class_color(label if label is not None else 0)
        rect = Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=edge, linewidth=linewidth)
        ax.add_patch(rect)
        patches.append(rect)
        if show_labels and label is not None:
            text = class_names[label] if class_names is not None else str(label)
            ax.text(x0, y0, text, color="black", fontsize=fontsize, va="bottom", ha="left",
                    bbox={"facecolor": edge, "edgecolor": "none", "pad": 0.8, "alpha": 0.85})
    return patches


def image_grid(
    images: Sequence,
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    boxes: Sequence | None = None,
    box_labels: Sequence | None = None,
    class_names: Sequence[str] | None = None,
    spacing_mm: tuple[float, float] | None = None,
    scalebar_mm: float | None = None,
    cell_size: float = 2.4,
    suptitle: str | None = None,
    vmin: float = 0.0,
    vmax: float = 1.0,
):
    """A gallery of radiographs (optionally with boxes per image); returns the Figure."""
    import matplotlib.pyplot as plt

    n = len(images)
    if n == 0:
        raise ValueError("image_grid needs at least one image")
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell_size * ncols, cell_size * nrows + (0.4 if suptitle else 0)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_axis_off()
            continue
        show_radiograph(images[i], ax=ax, spacing_mm=spacing_mm, scalebar_mm=scalebar_mm,
                        title=titles[i] if titles is not None else None, vmin=vmin, vmax=vmax)
        if boxes is not None and len(boxes[i]):
            draw_boxes(ax, boxes[i], labels=box_labels[i] if box_labels is not None else None, class_names=class_names)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    return fig


def class_legend(ax, class_names: Sequence[str], indices: Sequence[int] | None = None, **legend_kwargs):
    """Add a legend of class colours (all classes, or only ``indices``) to ``ax``."""
    from matplotlib.patches import Patch

    indices = range(len(class_names)) if indices is None else indices
    handles = [Patch(facecolor="none", edgecolor=class_color(i), label=class_names[i]) for i in indices]
    legend_kwargs.setdefault("fontsize", 7)
    legend_kwargs.setdefault("loc", "upper right")
    return ax.legend(handles=handles, **legend_kwargs)
