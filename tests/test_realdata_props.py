"""Property-based tests of box scaling and clipping (and of the token map built from the boxes)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcak_lib.realdata.common import scale_boxes, square_geometry

coord = st.floats(min_value=-300, max_value=700, allow_nan=False, width=32)


@settings(max_examples=300, deadline=None)
@given(h=st.integers(8, 600), w=st.integers(8, 600), size=st.sampled_from([28, 56, 224]),
       mode=st.sampled_from(["pad", "crop", "stretch"]), box=st.tuples(coord, coord, coord, coord))
def test_scaled_boxes_are_valid_and_follow_the_geometry(h, w, size, mode, box):
    geom = square_geometry(h, w, size, mode)
    out, valid, reasons, clipped = scale_boxes(np.array([box]), geom)
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        assert not valid[0] and "x_max <= x_min" in reasons[0]
        return
    if not valid[0]:
        assert reasons[0] and np.isnan(out[0]).all()
        inside = min(x1, w) > max(x0, 0) and min(y1, h) > max(y0, 0)
        assert not inside or mode == "crop"  # only a crop can lose a box that touches the image
        return
    b = out[0]
    assert reasons[0] is None and b[2] > b[0] and b[3] > b[1] and b.min() >= 0 and b.max() <= size
    fully_inside = x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h
    if fully_inside and mode != "crop":
        assert not clipped[0]
        expected = [(x0 + geom.ox) * geom.sx, (y0 + geom.oy) * geom.sy, (x1 + geom.ox) * geom.sx, (y1 + geom.oy) * geom.sy]
        assert b == pytest.approx(expected, rel=1e-5, abs=1e-3)
    # np.allclose's tolerance in scale_boxes: float noise at an edge (e.g. y0 = -5e-22) is not a clip
    tol = 0.01
    if x0 < -tol or y0 < -tol or x1 > w + tol or y1 > h + tol:
        assert clipped[0]
    # the scaled box, mapped back, lies inside the original image
    back = [b[0] / geom.sx - geom.ox, b[1] / geom.sy - geom.oy, b[2] / geom.sx - geom.ox, b[3] / geom.sy - geom.oy]
    assert back[0] >= -1e-3 and back[1] >= -1e-3 and back[2] <= w + 1e-3 and back[3] <= h + 1e-3


tokens = pytest.importorskip("mlcak_lib.tokens")


@settings(max_examples=200, deadline=None)
@given(h=st.integers(16, 400), w=st.integers(16, 400), mode=st.sampled_from(["pad", "crop", "stretch"]),
       grid=st.sampled_from([4, 7, 14, 28]), label=st.integers(0, 2),
       box=st.tuples(coord, coord, st.floats(0.0009765625, 400, width=32), st.floats(0.0009765625, 400, width=32)))
def test_every_valid_box_marks_a_token_of_its_class(h, w, mode, grid, label, box):
    x0, y0, bw, bh = box
    geom = square_geometry(h, w, 224, mode)
    out, valid, _, _ = scale_boxes(np.array([[x0, y0, x0 + bw, y0 + bh]]), geom)
    if not valid[0]:
        return
    tmap = tokens.boxes_to_token_map(out, [label], 224, grid, 3)
    assert tmap[label].sum() >= 1 and tmap.sum() == tmap[label].sum()


@pytest.mark.parametrize("h, w, y1", [(8, 13, 1.1920928955078125e-07), (8, 10, 5.769331416623572e-33)])
def test_a_tiny_box_keeps_a_positive_extent_after_rounding(h, w, y1):
    # found by hypothesis: boxes this thin, scaled to 28 px with a padding offset, rounded to zero height
    geom = square_geometry(h, w, 28, "pad")
    out, valid, reasons, _ = scale_boxes(np.array([[0.0, 0.0, 1.0, y1]]), geom)
    b = out[0]
    assert valid[0] and reasons[0] is None and b[2] > b[0] and b[3] > b[1] and b.max() <= 28
