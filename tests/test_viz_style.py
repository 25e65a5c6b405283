"""mlcak_lib.viz course style (issue 15): 110 dpi recorded in the PNG, no overlapping text, visible lines."""

import io
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mlcak_lib import viz  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_style():
    with matplotlib.rc_context(), warnings.catch_warnings():
        yield
    plt.close("all")


def _inline_png(fig) -> bytes:
    """The PNG the inline backend shows (IPython's print_figure: fig.dpi, bbox_inches='tight')."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight")
    return buf.getvalue()


def test_style_records_110_dpi_and_a_column_wide_figure_fits():
    viz.use_course_style()
    assert matplotlib.rcParams["figure.dpi"] == viz.COURSE_DPI == 110
    fig, ax = plt.subplots(figsize=(viz.MAX_FIGURE_INCHES, 3))
    ax.plot([0, 1], [0, 1], label="a")
    ax.set(title="title", xlabel="x", ylabel="y")
    width, _, dpi = viz.png_info(_inline_png(fig))
    assert dpi == pytest.approx(110, abs=0.1)
    assert width <= viz.COLUMN_PX


def test_style_refuses_a_low_dpi():
    with pytest.raises(ValueError, match="110 dpi"):
        viz.use_course_style(dpi=72)


def test_tight_layout_still_works_without_a_warning_and_fill_plots_accept_the_cycle():
    viz.use_course_style()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        viz.use_course_style()  # the layout-change warning is filtered after the "error" default
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.plot(np.linspace(0, 1, 500), np.linspace(0, 1, 500) ** 2)
        ax.fill([0, 1, 1], [0, 0, 1])
        ax.hist(np.random.default_rng(0).random(50), histtype="step")
        ax.errorbar([1, 2], [1, 2], yerr=[0.1, 0.1])
        fig.tight_layout()
        _inline_png(fig)
    styles = [line.get_linestyle() for line in ax.get_lines()[:2]]
    assert styles[0] != styles[1], "consecutive lines differ in style, not only in colour"


def test_text_overlaps_finds_a_legend_on_the_title_and_constrained_layout_avoids_a_suptitle_clash():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.set_title("A long title that runs into the legend placed above the axes")
    ax.plot([1, 2], label="a line")
    ax.legend(loc="upper left", bbox_to_anchor=(0, 1.2))
    assert viz.text_overlaps(fig)
    viz.use_course_style()
    fig, axes = plt.subplots(1, 2, figsize=(6, 2.5))
    for ax in axes:
        ax.set_title("a panel title")
        ax.plot([1, 2], label="a")
        ax.set(xlabel="x label", ylabel="y label")
    fig.suptitle("A figure title")
    assert viz.text_overlaps(fig) == []


def test_log_ticks_label_only_the_given_values():
    fig, ax = plt.subplots(figsize=(2.2, 2))
    ax.plot([28, 56, 112, 224], [0.5, 0.6, 0.7, 0.8])
    ax.set_xscale("log")
    ax.set_xlim(25, 250)
    viz.log_ticks(ax, [28, 56, 112, 224])
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["28", "56", "112", "224"]
    assert all(not t.get_text() for t in ax.xaxis.get_minorticklabels())
    assert viz.text_overlaps(fig) == []


def test_separate_lines_gives_coinciding_lines_markers_and_offsets():
    fig, ax = plt.subplots()
    for name in ("cardiomegaly", "effusion"):
        ax.plot([28, 56, 112], [0.8, 0.85, 0.9], label=name)
    ax.axhline(0.5)  # unlabelled reference line: left alone
    viz.separate_lines(ax, offset_points=3)
    a, b, ref = ax.get_lines()
    assert a.get_marker() != b.get_marker() and ref.get_marker() == "None"
    fig.canvas.draw()
    xa = a.get_transform().transform(np.c_[a.get_xdata(), a.get_ydata()])[:, 0]
    xb = b.get_transform().transform(np.c_[b.get_xdata(), b.get_ydata()])[:, 0]
    assert np.allclose(xb - xa, 3 / 72 * fig.dpi)


def test_png_info_reads_size_and_dpi():
    fig = plt.figure(figsize=(2, 1), dpi=120)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    assert viz.png_info(buf.getvalue()) == (240, 120, 120.0)
    with pytest.raises(ValueError):
        viz.png_info(b"GIF89a")
