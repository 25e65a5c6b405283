"""Notebook 07's supervision regimes, data adapter, metrics and cache key (mlcak_lib.detection)."""


import numpy as np
import pytest
import torch

from mlcak_lib.detection import evaluate as ev
from mlcak_lib.detection import keys
from mlcak_lib.detection.data import detection_targets, omni_batch, scale_boxes
from mlcak_lib.detection.sampling import (BOXES, LABELS, NONE, TwoStreamBatchSampler, regime_counts, supervision_order,
                                          supervision_regime, two_stream_sampler)
from test_cache import assert_fingerprint_follows, assert_outside_model_code
from toy_data import toy_split

# --------------------------------------------------------------------------------------------
# Supervision regimes and the two-stream sampler
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [10, 16, 97, 1000])
@pytest.mark.parametrize("box, label", [(0.0, None), (0.1, 0.3), (0.25, 0.5), (0.5, None), (0.05, 0.0), (1.0, None)])
def test_regime_gives_exactly_the_requested_fractions(n, box, label):
    codes = supervision_regime(n, box, label, seed=3)
    n_box = int(np.floor(box * n + 0.5))
    n_label = n - n_box if label is None else int(np.floor(label * n + 0.5))
    assert regime_counts(codes) == {"boxes": n_box, "labels": n_label, "none": n - n_box - n_label}
    assert codes.shape == (n,) and set(np.unique(codes)) <= {BOXES, LABELS, NONE}


def test_regimes_are_seeded_and_nested():
    small, large = supervision_regime(200, 0.1, 0.2, seed=7), supervision_regime(200, 0.3, 0.2, seed=7)
    assert np.array_equal(small, supervision_regime(200, 0.1, 0.2, seed=7))
    assert not np.array_equal(small, supervision_regime(200, 0.1, 0.2, seed=8))
    assert set(np.flatnonzero(small == BOXES)) < set(np.flatnonzero(large == BOXES))
    assert set(np.flatnonzero(small != NONE)) < set(np.flatnonzero(large != NONE))  # labelled sets nest too


def test_stratified_order_keeps_the_mix_in_every_prefix():
    strata = np.r_[np.ones(30), np.zeros(70)].astype(int)
    np.random.default_rng(0).shuffle(strata)
    order = supervision_order(100, seed=2, strata=torch.as_tensor(strata))
    assert sorted(order.tolist()) == list(range(100))
    positives = np.cumsum(strata[order])
    assert np.all(np.abs(positives - 0.3 * np.arange(1, 101)) <= 1.0)
    codes = supervision_regime(100, 0.1, seed=2, strata=strata)
    assert int(strata[codes == BOXES].sum()) == 3


def test_regime_refuses_impossible_fractions():
    with pytest.raises(ValueError, match="exceed 1"):
        supervision_regime(10, 0.6, 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        supervision_regime(10, 1.5)


def test_two_stream_batches_put_each_box_image_once_per_epoch_and_fill_up_with_the_rest():
    codes = supervision_regime(40, 0.2, 0.3, seed=0)  # 8 with boxes, 32 without
    sampler = two_stream_sampler(codes, 2, 3, seed=1)
    batches = list(sampler)
    assert len(sampler) == len(batches) == 4 and all(len(b) == 5 for b in batches)
    primary = [i for b in batches for i in b[:2]]
    assert sorted(primary) == sorted(np.flatnonzero(codes == BOXES).tolist())
    assert all(codes[i] != BOXES for b in batches for i in b[2:])
    assert len({i for b in batches for i in b[2:]}) == 12  # the secondary stream cycles a permutation
    assert list(sampler) == batches
    sampler.set_epoch(1)
    assert list(sampler) != batches
    with pytest.raises(ValueError, match="secondary stream is empty"):
        TwoStreamBatchSampler([0, 1], [], 1, 1)


# --------------------------------------------------------------------------------------------
# From a split to detector targets
# --------------------------------------------------------------------------------------------

def test_targets_scale_the_224_px_boxes_to_the_detector_resolution():
    split = toy_split(12, resolutions=(224, 112), seed=2)
    with_boxes = [i for i in range(12) if len(split.boxes[i])]
    targets = detection_targets(split, with_boxes, 112)
    for i, t in zip(with_boxes, targets):
        assert torch.allclose(t["boxes"], split.boxes[i] / 2) and torch.equal(t["labels"], split.box_labels[i])
    assert torch.allclose(scale_boxes(torch.tensor([[0.0, 10, 224, 230]]), 56), torch.tensor([[0.0, 2.5, 56, 56]]))
    codes = supervision_regime(12, 0.5, 0.25, seed=0)
    batch = omni_batch(split, [0, 1, 2, 3], 112, codes)
    assert batch.images.shape == (4, 1, 112, 112) and torch.equal(batch.labels, split.mlct[:4])
    assert batch.supervision.tolist() == codes[:4].tolist()
    assert batch.boxed.tolist() == [i for i in range(4) if codes[i] == BOXES]
    no_boxes = split.subset([0, 1])
    no_boxes.boxes = []
    with pytest.raises(ValueError, match="has no boxes"):
        detection_targets(no_boxes, [0], 112)


# --------------------------------------------------------------------------------------------
# Metrics on hand-made cases with known answers
# --------------------------------------------------------------------------------------------

def _det(boxes, scores, labels=None):
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return {"boxes": boxes, "scores": torch.tensor(scores, dtype=torch.float32),
            "labels": torch.zeros(len(boxes), dtype=torch.long) if labels is None else torch.tensor(labels)}


GT = [torch.tensor([[10.0, 10, 15, 15]]), torch.tensor([[20.0, 20, 35, 35]])]  # a 5-px and a 15-px lesion
GT_LABELS = [torch.tensor([0]), torch.tensor([0])]
GT_MM = [torch.tensor([5.0]), torch.tensor([15.0])]  # 1 mm per pixel


def _ap(dets, gt=GT, labels=GT_LABELS, mm=GT_MM):
    gt_d, dt_d = ev.coco_dicts(gt, labels, dets, 2, mm, ev.mm_per_pixel(gt, mm))
    return ev.coco_evaluation(gt_d, dt_d)


def test_ap_is_one_for_perfect_detections():
    e = _ap([_det(GT[0], [0.9]), _det(GT[1], [0.8])])
    assert ev.average_precision(e, iou=0.5) == pytest.approx(1.0) and ev.average_precision(e, iou=None) == pytest.approx(1.0)
    assert np.isnan(ev.average_precision(e, category=1))  # a class without lesions has no AP


def test_ap_of_half_the_lesions_found_is_51_of_101():
    e = _ap([_det(GT[0], [0.9]), _det([[100.0, 100, 110, 110]], [0.8])])  # one hit, one false positive
    assert ev.average_precision(e, iou=0.5) == pytest.approx(51 / 101)  # COCO's 101 recall points


def test_ap_over_iou_thresholds_counts_the_thresholds_a_box_passes():
    gt = [torch.tensor([[0.0, 0, 10, 10]])]
    e = _ap([_det([[0.0, 0, 10, 13.9]], [0.9])], gt, [torch.tensor([0])], [torch.tensor([10.0])])  # IoU 0.719
    assert ev.average_precision(e, iou=0.5) == pytest.approx(1.0)
    assert ev.average_precision(e, iou=None) == pytest.approx(0.5)  # 0.50 ... 0.70 of ten thresholds


def test_ap_by_lesion_size_uses_the_course_size_bins():
    e = _ap([_det(GT[0], [0.9]), _det(torch.zeros(0, 4), [])])  # the 5-mm lesion found, the 15-mm one missed
    assert list(e.params.areaRngLbl) == ["all", "< 10 mm", "10-20 mm", ">= 20 mm"]
    assert ev.average_precision(e, "< 10 mm") == pytest.approx(1.0) and ev.average_precision(e, "10-20 mm") == 0.0
    assert np.isnan(ev.average_precision(e, ">= 20 mm"))
    assert ev.average_precision(e, "all") == pytest.approx(51 / 101)


def test_froc_on_a_hand_made_curve():
    # 2 images, 4 lesions; hits scored 0.9, 0.6, 0.4; false positives 0.8, 0.7, 0.3
    sens = ev.froc(np.array([0.9, 0.6, 0.4]), np.array([0.8, 0.7, 0.3]), n_lesions=4, n_images=2)
    assert sens == pytest.approx({0.5: 0.25, 1.0: 0.75, 2.0: 0.75, 4.0: 0.75})
    every_detection = ev.froc(np.array([0.9, 0.5]), np.array([]), n_lesions=2, n_images=1)
    assert every_detection[0.5] == 1.0  # the lowest-scoring hit counts too (sentinel)
    assert all(np.isnan(v) for v in ev.froc(np.array([]), np.array([0.5]), 0, 1).values())


def test_detection_report_matches_lesions_with_cocoeval_and_reads_aurocs():
    gt = [torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60]]), torch.tensor([[0.0, 0, 20, 20], [80, 80, 90, 90]])]
    labels = [torch.tensor([0, 0]), torch.tensor([0, 0])]
    mm = [torch.tensor([5.0, 5.0]), torch.tensor([15.0, 5.0])]
    dets = [_det([[0.0, 0, 10, 10], [100, 100, 110, 110], [50, 50, 60, 60]], [0.9, 0.8, 0.4]),
            _det([[120.0, 0, 130, 10], [0, 0, 20, 20], [0, 120, 10, 130]], [0.7, 0.6, 0.3])]
    mlct = torch.tensor([[1.0, 0], [1.0, 0], [0, 1.0], [0, 0]])
    empty = [torch.zeros(0, 4)] * 2, [torch.zeros(0, dtype=torch.long)] * 2, [torch.zeros(0)] * 2  # two normal films
    with pytest.raises(ValueError, match="one entry per image"):
        ev.detection_report(gt, labels, dets + [_det(torch.zeros(0, 4), [])], ["a", "b"])
    report = ev.detection_report(gt + empty[0], labels + empty[1], dets + [_det(torch.zeros(0, 4), [])] * 2, ["a", "b"],
                                 gt_mm=mm + empty[2], mlct=mlct,
                                 global_scores=torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.3]]))
    rows = {r["stratum"]: r for r in report["strata"]}
    # hits 0.9, 0.6, 0.4 and false positives 0.8, 0.7, 0.3 over 4 images: 0.5 FP per image finds 3 of 4
    assert rows["all"]["n_lesions"] == 4 and rows["all"]["froc@0.5"] == pytest.approx(0.75)
    assert rows["all"]["froc@4"] == pytest.approx(0.75) and rows["all"]["ap50"] < 1
    assert rows["10-20 mm"]["n_lesions"] == 1 and rows["10-20 mm"]["froc@0.5"] == 1.0  # its one lesion, hit at 0.6
    assert rows["< 10 mm"]["n_lesions"] == 3 and np.isnan(rows[">= 20 mm"]["ap50"])
    assert report["mm_per_px"] == pytest.approx(0.5)  # median of 5/10, 5/10, 15/20, 5/10
    assert report["auroc"]["global"]["per_class"]["a"] == 1.0 and report["auroc"]["global"]["macro"] == 1.0
    assert report["auroc"]["detection"]["per_class"]["a"] == 1.0  # images 0-1 have detections, 2-3 none
    assert report["auroc"]["detection"]["per_class"]["b"] == 0.5  # no detection of b anywhere: all ties
    assert report["auroc"]["global"]["by_size"][0]["class"] == "a"
    assert ev.detection_scores(dets, 2)[1].tolist() == pytest.approx([0.7, 0.0])


# --------------------------------------------------------------------------------------------
# The detectors' own cache key
# --------------------------------------------------------------------------------------------

def test_detection_is_outside_the_teacher_and_student_keys_and_has_its_own():
    assert_outside_model_code("detection", keys.DETECTION_CODE)


def test_detection_fingerprint_follows_the_package_source(tmp_path, monkeypatch):
    assert_fingerprint_follows(keys.detection_fingerprint, "detection/losses.py", tmp_path, monkeypatch)
