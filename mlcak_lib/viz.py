"""Plotting helpers for radiographs: display, boxes, galleries (introduced in notebook 01).

Course images are float32 in [0, 1], bone bright, so every display uses the gray colour map
with ``vmin=0, vmax=1`` unless told otherwise; pixels keep their physical aspect ratio when the
spacing is known, and a scale bar shows millimetres.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

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
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell_size * ncols, cell_size * nrows + (0.4 if suptitle else 0)), squeeze=False,
                             layout="tight")
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


# --- The course's figure style (issue 15) ---------------------------------------------------------
#
# Inline figures are PNGs shown one PNG pixel per CSS pixel. At 110 dpi a 10-point label is about
# 15 px high (legible on a laptop, where matplotlib's 72 or 100 dpi give 10-14 px), and a
# notebook column shows about 1000 px without shrinking the image: GitHub's notebook view and
# Jupyter Notebook 7 (whose cells are at most 1200 px wide, prompt and padding included) keep about
# that much, JupyterLab and Colab more on a 1366-px laptop screen with the file browser closed.
# Hence every figure is drawn at ``COURSE_DPI`` and its PNG is at most ``COLUMN_PX`` wide: a
# ``figsize`` at most ``MAX_FIGURE_INCHES`` wide (8.8 in) fits, the 0.1-in pads of the inline
# backend's tight crop included.
COURSE_DPI: int = 110
COLUMN_PX: int = 1000
MAX_FIGURE_INCHES: float = 8.8

# Line styles cycle with the colours, so a line drawn over another one of the same values leaves
# the lower one visible through its gaps (see :func:`separate_lines` for markers and offsets).
LINE_STYLES: tuple = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1)), (0, (1, 1)), (0, (6, 2, 1, 2)), (0, (2, 2)), (0, (4, 1, 1, 1, 1, 1)))
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")

_LAYOUT_WARNING = "The figure layout has changed to tight"


def course_rc(dpi: int = COURSE_DPI) -> dict:
    """The rcParams of :func:`use_course_style` (a plain dict; nothing is changed)."""
    from cycler import cycler

    colors = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
    return {
        "figure.dpi": dpi,
        "savefig.dpi": dpi,
        "figure.constrained_layout.use": True,  # titles, suptitles, colour bars and legends get room
        "axes.prop_cycle": cycler(color=list(colors)) + cycler(linestyle=list(LINE_STYLES)),
        "axes.titlesize": 10,
        "legend.fontsize": 8,
        "legend.framealpha": 0.85,
    }


def use_course_style(dpi: int = COURSE_DPI) -> None:
    """Set the course's figure style for this process (each notebook calls it once, after its imports).

    Figures are drawn at ``dpi`` (at least 110; the PNG records it in its pHYs chunk, which
    ``tests/test_notebook_hygiene.py`` reads), with constrained layout so titles, suptitles and
    legends do not overlap, and a colour + line-style cycle so coinciding lines stay visible.
    A figure that still calls ``tight_layout()`` gets the tight layout as before: the warning
    matplotlib emits when it replaces the constrained layout is silenced here, and only it. Keep
    figures at most :data:`MAX_FIGURE_INCHES` wide (:data:`COLUMN_PX` pixels at 110 dpi).
    """
    import warnings

    import matplotlib

    if dpi < COURSE_DPI:
        raise ValueError(f"the course draws figures at {COURSE_DPI} dpi or more, got {dpi}")
    matplotlib.rcParams.update(course_rc(dpi))
    warnings.filterwarnings("ignore", message=_LAYOUT_WARNING, category=UserWarning)


def separate_lines(ax, markers: bool = True, offset_points: float = 0.0, markevery: float | None = None) -> None:
    """Make every line of ``ax`` distinguishable when lines coincide (notebook 02's AUROC curves).

    Gives line *k* the marker ``MARKERS[k]`` (``markers=True``; ``markevery`` thins markers on
    dense lines), and shifts it by ``(k - (n - 1) / 2) * offset_points`` typographic points
    horizontally (works on log axes too), so equal values are drawn side by side, not on top of
    each other. Only labelled lines are changed when any line has a label (reference lines such as
    ``axhline`` usually have none). Call it before ``ax.legend()`` so the legend shows the markers.
    """
    from matplotlib.transforms import ScaledTranslation

    lines = [line for line in ax.get_lines() if not line.get_label().startswith("_")] or list(ax.get_lines())
    n = len(lines)
    for k, line in enumerate(lines):
        if markers:
            line.set_marker(MARKERS[k % len(MARKERS)])
            if markevery is not None:
                line.set_markevery(markevery)
        if offset_points:
            shift = (k - (n - 1) / 2) * offset_points / 72.0
            line.set_transform(line.get_transform() + ScaledTranslation(shift, 0, ax.figure.dpi_scale_trans))


def log_ticks(ax, values: Sequence[float], axis: str = "x", base: float = 10, fmt: str = "{:g}") -> None:
    """A log axis with labelled ticks only at ``values`` (no crowded minor labels).

    matplotlib labels the minor ticks of a log axis that spans less than about a decade, and
    those labels overlap (notebooks 02 and 05); this keeps one plain label per value.
    """
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log", base=base)
    values = [float(v) for v in values]
    target.set_major_locator(FixedLocator(values))
    target.set_ticklabels([fmt.format(v) for v in values])
    target.set_minor_locator(NullLocator())
    target.set_minor_formatter(NullFormatter())


def text_overlaps(fig, pad_px: float = 0.0) -> list[tuple[str, str]]:
    """Pairs of visible texts of ``fig`` whose boxes overlap (titles, labels, tick labels, legends).

    Draws the figure and compares the window extents of its non-empty visible ``Text`` artists and
    legend frames; texts inside one legend, and a legend with its own texts, are not compared.
    Returns ``[(text_a, text_b), ...]`` (empty when no text overlaps); use it to check a figure.
    """
    from matplotlib.legend import Legend
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    items = []  # (label, bbox, group)
    for legend in fig.findobj(Legend):
        if legend.get_visible():
            items.append((f"legend {legend.get_texts()[0].get_text() if legend.get_texts() else ''!r}", legend.get_window_extent(renderer), id(legend)))
    skip = {id(t) for lg in fig.findobj(Legend) for t in lg.findobj(Text)}
    drawn_ticks = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            skip.update(id(t) for tick in axis.get_major_ticks() + axis.get_minor_ticks() for t in (tick.label1, tick.label2))
            drawn_ticks.extend(_drawn_tick_labels(axis))
    for text in [t for t in fig.findobj(Text) if id(t) not in skip] + drawn_ticks:
        if not text.get_visible() or not text.get_text().strip():
            continue
        box = text.get_window_extent(renderer)
        if box.width <= 0 or box.height <= 0:
            continue
        items.append((text.get_text(), box, id(text)))
    found = []
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            (ta, a, ga), (tb, b, gb) = items[i], items[j]
            if ga == gb:
                continue
            if a.x0 < b.x1 - pad_px and b.x0 < a.x1 - pad_px and a.y0 < b.y1 - pad_px and b.y0 < a.y1 - pad_px:
                found.append((ta, tb))
    return found


def _drawn_tick_labels(axis) -> list:
    """The tick labels of ``axis`` that a draw shows (ticks inside the view interval)."""
    lo, hi = sorted(axis.get_view_interval())
    tol = 1e-9 * max(abs(lo), abs(hi), 1e-300)
    shown = []
    for tick in axis.get_major_ticks() + axis.get_minor_ticks():
        loc = tick.get_loc()
        if loc is None or not (lo - tol <= loc <= hi + tol):
            continue
        shown.extend(label for label in (tick.label1, tick.label2) if label.get_visible() and label.get_text().strip())
    return shown


def png_info(data: bytes) -> tuple[int, int, float | None]:
    """``(width, height, dpi)`` of PNG bytes; dpi from the pHYs chunk matplotlib writes (None if absent)."""
    import struct

    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    pos, dpi = 8, None
    while pos + 8 <= len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        if kind == b"pHYs":
            per_x, _, unit = struct.unpack(">IIB", data[pos + 8:pos + 17])
            dpi = round(per_x * 0.0254, 1) if unit == 1 else None
        if kind in (b"IDAT", b"IEND"):
            break
        pos += 12 + length
    return width, height, dpi


#: Set (to anything) by the course runner and the test suite: notebooks execute without a browser.
HEADLESS_ENV = "MLCAK_HEADLESS"


def interact(fn: Callable[..., Any], **controls: Any) -> Any:
    """``ipywidgets.interact(fn, **controls)`` in a live notebook (notebooks 01-03's explorers).

    Under headless execution (``$MLCAK_HEADLESS`` set: ``python -m mlcak_lib.course run`` and the
    nbval tests) it calls ``fn`` once with each control's initial ``value`` instead, so the
    executed notebook shows the explorer's first view as a plain figure: executing
    ``interact`` without a browser can deadlock nbclient (jupyter/nbclient#312), and a widget
    there has nobody to move it anyway.
    """
    if os.environ.get(HEADLESS_ENV):
        return fn(**{name: getattr(c, "value", c) for name, c in controls.items()})
    import ipywidgets

    return ipywidgets.interact(fn, **controls)

