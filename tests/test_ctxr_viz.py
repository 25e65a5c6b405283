"""Notebook 08's CT figures (mlcak_lib.ctxr_viz): slice orientation, the views' cross-hair, the AP figure."""

import matplotlib.pyplot as plt  # the Agg backend: tests/conftest.py
import numpy as np

from mlcak_lib import ctxr_viz as cviz
from mlcak_lib.ctxr.volumes import CTLesion, CTStudy, ap_projection, project_box


def marked_volume(shape=(10, 12, 14)) -> np.ndarray:
    """Zeros with one bright voxel at the patient's right (x=1), anterior (y=10), superior (z=12) corner."""
    vol = np.zeros(shape, np.float32)
    vol[1, 10, 12] = 1.0
    return vol


def test_slices_follow_the_radiological_convention():
    vol = marked_volume()
    s = cviz.orthogonal_slices(vol, (1, 10, 12))
    assert s["axial"].shape == (12, 10) and s["coronal"].shape == (14, 10) and s["sagittal"].shape == (14, 12)
    # axial: anterior up (row 12-1-10 = 1), patient's right on the viewer's left (column 1)
    assert tuple(np.argwhere(s["axial"])[0]) == (1, 1)
    # coronal: superior up (row 14-1-12 = 1), column = x, as the AP projection
    assert tuple(np.argwhere(s["coronal"])[0]) == (1, 1)
    coronal_like_ap = ap_projection(np.where(vol > 0, 1000.0, -1000.0), 1.0)
    assert np.unravel_index(np.argmax(coronal_like_ap), coronal_like_ap.shape) == (1, 1)
    # sagittal: superior up, anterior on the left (column 12-1-10 = 1)
    assert tuple(np.argwhere(s["sagittal"])[0]) == (1, 1)
    # the cross-hair sits on the marked voxel in every view
    for view, (col, row) in cviz._in_view((1, 10, 12), vol.shape).items():
        assert s[view][row, col] == 1.0


def lesion_study() -> CTStudy:
    grid = (16, 16, 16)
    mask = np.ones((2, 3, 4), bool)
    les = CTLesion("Nodule/Mass", "right", "upper", 12.0, (4.0, 7.5, 11.0), (3, 6, 9, 5, 9, 13), mask, 5.0, grid)
    vol = np.full(grid, -800.0, np.float32)
    vol[les.full_mask()] = 40.0
    return CTStudy("phantom", 0, vol, np.zeros(grid, np.uint8), 5.0, (les,))


def test_slice_point_lies_in_the_lesion_and_projection_draws_its_box():
    study = lesion_study()
    les = study.lesions[0]
    point = cviz.slice_point(les)
    assert les.full_mask()[point]
    assert cviz.slice_point(None, (8, 8, 8)) == (4, 4, 4)
    fig, axes = plt.subplots(1, 4)
    cviz.show_orthogonal(study.volume, point, axes[:3], lesion=les)
    boxes = cviz.show_projection(study, axes[3])
    assert np.array_equal(boxes[0], project_box(les)) and len(axes[3].patches) == 1
    img = cviz.projection_image(study.volume, study.voxel_mm)
    assert img.min() >= 0 and img.max() <= 1 and img.shape == (16, 16)
    plt.close(fig)


def test_labels_and_wrapping():
    study = lesion_study()
    assert cviz.study_label(study) == "phantom · study 0 · Nodule/Mass"
    assert max(len(line) for line in cviz.wrap("word " * 40, 30).splitlines()) <= 30


def test_show_view_names_its_view():
    fig, ax = plt.subplots()
    cviz.show_view(ax, marked_volume(), (1, 10, 12), "sagittal")
    assert ax.get_title() == "sagittal"
    try:
        cviz.show_view(ax, marked_volume(), (1, 10, 12), "oblique")
    except ValueError as err:
        assert "oblique" in str(err)
    else:
        raise AssertionError("an unknown view must raise")
    plt.close(fig)
