"""Token-grid lesion maps from boxes (mlcak_lib.tokens)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcak_lib.tokens import any_lesion_map, boxes_to_any_lesion_map, boxes_to_token_map


@pytest.mark.parametrize("grid", [7, 14, 28])
def test_box_exactly_on_token_borders_marks_only_covered_tokens(grid):
    t = 224 // grid
    box = [t, t, 3 * t, 2 * t]  # covers tokens (row 1, cols 1..2) exactly
    m = boxes_to_token_map([box], [0], 224, grid, 1)[0]
    expected = np.zeros((grid, grid), np.float32)
    expected[1, 1:3] = 1
    np.testing.assert_array_equal(m, expected)


@pytest.mark.parametrize("grid", [7, 14, 28])
def test_box_smaller_than_a_token_is_never_lost(grid):
    t = 224 // grid
    box = [t * 2 + 0.2, t * 3 + 0.3, t * 2 + 0.9, t * 3 + 0.8]  # sub-pixel sized, inside token (3, 2)
    m = boxes_to_token_map([box], [1], 224, grid, 2)
    assert m[0].sum() == 0
    assert m[1].sum() == 1 and m[1, 3, 2] == 1


def test_small_box_straddling_a_border_marks_both_tokens_when_each_holds_enough():
    # 4 px box, 2 px on each side of the border between tokens 0 and 1 (t = 16)
    m = boxes_to_token_map([[14, 4, 18, 8]], [0], 224, 14, 1)[0]
    assert m[0, 0] == 1 and m[0, 1] == 1 and m.sum() == 2
    # 4 px box with only 0.5 px (12.5 % < 25 %) across the border: the centre token only
    m = boxes_to_token_map([[12.5, 4, 16.5, 8]], [0], 224, 14, 1)[0]
    assert m[0, 0] == 1 and m.sum() == 1


def test_sliver_of_large_box_in_a_token_does_not_count():
    m = boxes_to_token_map([[0, 0, 33, 32]], [0], 224, 14, 1)[0]  # 1 px into column 2
    assert m[0, 2] == 0 and m[:2, :2].sum() == 4 and m.sum() == 4


def test_thin_long_box_marks_a_column_of_tokens():
    m = boxes_to_token_map([[20, 0, 22, 224]], [0], 224, 14, 1)[0]
    assert m[:, 1].sum() == 14 and m.sum() == 14


def test_empty_boxes_and_any_lesion_helpers():
    m = boxes_to_token_map(np.zeros((0, 4)), [], 224, 7, 3)
    assert m.shape == (3, 7, 7) and m.sum() == 0
    m = boxes_to_token_map([[0, 0, 10, 10], [100, 100, 120, 130]], [0, 2], 224, 7, 3)
    anymap = any_lesion_map(m)
    np.testing.assert_array_equal(anymap, boxes_to_any_lesion_map([[0, 0, 10, 10], [100, 100, 120, 130]], 224, 7))
    assert any_lesion_map(m[None]).shape == (1, 7, 7)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(grid=15), "does not divide image_size 224"),
        (dict(grid=0), "positive integer"),
        (dict(boxes=[[10, 10, 5, 20]]), "x1 < x0"),
        (dict(boxes=[[-5, 10, 5, 20]]), "outside"),
        (dict(boxes=[[10, 10, 20, 230]]), "outside"),
        (dict(labels=[5]), "not a class index"),
        (dict(labels=[0, 1]), "1 boxes but 2 labels"),
        (dict(min_fraction=0.8), "min_fraction"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, match):
    args = dict(boxes=[[10, 10, 20, 20]], labels=[0], image_size=224, grid=14, num_classes=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        boxes_to_token_map(**args)


boxes_strategy = st.lists(
    st.tuples(st.floats(0, 224), st.floats(0, 224), st.floats(0, 60), st.floats(0, 60)), min_size=0, max_size=6
)


@settings(max_examples=150, deadline=None)
@given(raw=boxes_strategy, grid=st.sampled_from([1, 2, 4, 7, 8, 14, 28, 56]))
def test_fuzz_every_box_marks_its_centre_token_and_nothing_far_away(raw, grid):
    boxes = [[x, y, min(x + w, 224), min(y + h, 224)] for x, y, w, h in raw]
    labels = [k % 3 for k in range(len(boxes))]
    m = boxes_to_token_map(boxes, labels, 224, grid, 3)
    assert m.shape == (3, grid, grid) and set(np.unique(m)) <= {0.0, 1.0}
    t = 224 / grid
    allowed = np.zeros_like(m, bool)
    for (x0, y0, x1, y1), c in zip(boxes, labels):
        cx, cy = min(int((x0 + x1) / 2 // t), grid - 1), min(int((y0 + y1) / 2 // t), grid - 1)
        assert m[c, cy, cx] == 1  # no lesion is lost
        r0, r1 = min(int(y0 // t), grid - 1), min(int(np.ceil(y1 / t)), grid)
        c0, c1 = min(int(x0 // t), grid - 1), min(int(np.ceil(x1 / t)), grid)
        allowed[c, r0 : max(r1, r0 + 1), c0 : max(c1, c0 + 1)] = True
    assert not (m.astype(bool) & ~allowed).any()  # only tokens the box touches
