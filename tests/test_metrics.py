"""Metrics give known values on hand-made inputs."""

import math

import numpy as np
import torch

from mlcak_lib import metrics as M


def test_auroc_known_values():
    assert M.auroc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert M.auroc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert M.auroc([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4]) == 0.75
    assert math.isnan(M.auroc([1, 1, 1], [0.1, 0.5, 0.9]))


def test_per_class_and_macro_exclude_undefined_classes():
    y = np.array([[0, 1, 0], [1, 1, 0], [0, 1, 0], [1, 1, 0]])
    s = np.array([[0.1, 0.5, 0.3], [0.9, 0.2, 0.1], [0.2, 0.4, 0.9], [0.3, 0.7, 0.2]])
    per = M.auroc_per_class(y, s, ["a", "b", "c"])
    assert per["a"] == 1.0 and math.isnan(per["b"]) and math.isnan(per["c"])
    assert M.macro_auroc(per) == 1.0
    assert M.macro_auroc([0.5, float("nan"), 1.0]) == 0.75
    assert math.isnan(M.macro_auroc([float("nan")]))


def test_mcct_uses_softmax_abnormal_probability():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    p = M.abnormal_probability(logits)
    assert np.allclose(p, [1 / (1 + math.e**2), 1 / (1 + math.e**-2), 0.5])
    assert M.mcct_auroc([0, 1, 0], logits) == 1.0
    fpr, tpr, _ = M.roc_points([0, 1, 0], p)
    assert fpr[0] == 0 and tpr[-1] == 1


def test_size_strata():
    # class 0 positives: a 5 mm lesion (score 0.6) and a 25 mm lesion (score 0.9); two negatives (0.1, 0.7)
    y = np.array([[1, 0], [1, 0], [0, 0], [0, 1]])
    s = np.array([[0.6, 0.0], [0.9, 0.0], [0.1, 0.0], [0.7, 0.9]])
    labels = [torch.tensor([0, 0]), torch.tensor([0]), torch.tensor([], dtype=torch.long), torch.tensor([1])]
    mm = [torch.tensor([3.0, 5.0]), torch.tensor([25.0]), torch.tensor([]), torch.tensor([float("nan")])]
    assert np.allclose(M.largest_lesion_mm(labels, mm, 2)[:, 0], [5.0, 25.0, np.nan, np.nan], equal_nan=True)
    table = M.size_stratified_auroc(y, s, labels, mm, ["nodule", "effusion"])
    assert list(table["class"].unique()) == ["nodule"]  # effusion has no sized lesion
    by_bin = dict(zip(table["size_bin"], table["auroc"]))
    assert by_bin["< 10 mm"] == 0.5 and by_bin[">= 20 mm"] == 1.0 and math.isnan(by_bin["10-20 mm"])
    assert list(table["n_pos"]) == [1, 0, 1] and list(table["n_neg"]) == [2, 2, 2]


def test_auroc_ci_brackets_the_estimate_and_narrows_with_more_data():
    from mlcak_lib.metrics import auroc, auroc_ci

    rng = np.random.default_rng(0)
    widths = []
    for n in (60, 2000):
        y = rng.random(n) < 0.3
        s = rng.standard_normal(n) + 1.0 * y  # a true AUROC of about 0.76
        lo, hi = auroc_ci(y, s, n_boot=400)
        assert lo < auroc(y, s) < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 3
    y = rng.random(3000) < 0.5
    lo, hi = auroc_ci(y, rng.standard_normal(3000), n_boot=400)  # pure noise: the interval covers 0.5
    assert lo < 0.5 < hi
    assert np.isnan(auroc_ci(np.ones(5), np.arange(5))[0])
