"""Notebook 07's detector and OXnet's losses (mlcak_lib.detection): the acceptance tests of issue 16 on tiny models."""

import math

import numpy as np
import pytest
import torch

from mlcak_lib.detection import ema, losses
from mlcak_lib.detection.data import omni_batch
from mlcak_lib.detection.model import build_detector
from mlcak_lib.detection.objective import OXnetObjective, OXnetWeights, teacher_boxes
from mlcak_lib.detection.sampling import two_stream_sampler, supervision_regime
from toy_data import toy_split

TINY = dict(widths=(8, 8, 16, 16, 24), fpn_channels=16, head_convs=1)


def _tiny(num_classes=3, size=112, seed=0, **kwargs):
    return build_detector(num_classes, size, seed=seed, **TINY, **kwargs)


# --------------------------------------------------------------------------------------------
# The detector
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size, same_maps, levels", [(224, False, [(28, 28), (14, 14), (7, 7)]),
                                                     (224, True, [(28, 28), (14, 14), (7, 7)]),
                                                     (112, False, [(14, 14), (7, 7), (4, 4)]),
                                                     (112, True, [(28, 28), (14, 14), (7, 7)])])
def test_detector_outputs_at_both_resolutions(size, same_maps, levels):
    model = _tiny(size=size, same_maps=same_maps)
    out = model(torch.rand(2, 1, size, size))
    n = sum(h * w for h, w in levels) * 9
    assert out.level_shapes == levels and out.num_anchors == 9
    assert out.cls_logits.shape == (2, n, 3) and out.bbox_regression.shape == (2, n, 4)
    assert len(out.anchors) == 2 and out.anchors[0].shape == (n, 4)
    assert out.cam.shape == (2, 3, *levels[-1]) and out.features.shape == (2, 24, *levels[-1])
    assert [m.shape for m in model.level_maps(out)] == [(2, 3, h, w) for h, w in levels]
    assert not out.cam.abs().sum()  # the global head starts at zero (official initialisation)
    model.eval()
    dets = model.detect(model(torch.rand(2, 1, size, size)))
    assert len(dets) == 2 and set(dets[0]) == {"boxes", "scores", "labels"}


def test_same_maps_gives_112_px_the_anchors_of_224_px_halved():
    """With ``same_maps`` the first stage's stride follows the image size, so at 112 px every anchor is the 224-px
    anchor at half scale, to the pixel (same count, same place relative to the film): what keeps lesions covered at 112 px."""
    sizes = (8, 24, 72)
    big = _tiny(size=224, same_maps=True, anchor_sizes=sizes)(torch.rand(1, 1, 224, 224)).anchors[0]
    small = _tiny(size=112, same_maps=True, anchor_sizes=sizes)(torch.rand(1, 1, 112, 112)).anchors[0]
    assert big.shape == small.shape and torch.allclose(small, big / 2, atol=1.0)  # torchvision rounds to whole px
    old = _tiny(size=112, same_maps=False, anchor_sizes=sizes)(torch.rand(1, 1, 112, 112)).anchors[0]
    assert len(old) < len(small)  # strides 8/16/32 at 112 px: a quarter of the anchor positions


def test_level_maps_are_the_max_over_anchors():
    model = _tiny()
    out = model(torch.rand(1, 1, 112, 112))
    h, w = out.level_shapes[0]
    first = torch.sigmoid(out.per_level(out.cls_logits)[0]).view(1, h, w, 9, 3)
    assert torch.allclose(model.level_maps(out)[0][0, 2, 3, 4], first[0, 3, 4, :, 2].max())


# --------------------------------------------------------------------------------------------
# Dual attention alignment
# --------------------------------------------------------------------------------------------

def test_detection_attention_takes_the_level_with_the_highest_peak_and_sums_to_one():
    fine, coarse = torch.full((1, 2, 8, 8), 0.1), torch.full((1, 2, 4, 4), 0.1)
    fine[0, 0, 2, 2] = 0.9  # class 0 peaks on the fine level
    coarse[0, 1, 1, 1] = 0.8  # class 1 on the coarse level
    att = losses.detection_attention([fine, coarse], (4, 4))
    assert att.shape == (1, 2, 4, 4) and torch.allclose(att.sum(dim=(2, 3)), torch.ones(1, 2))
    assert int(att[0, 1].argmax()) == 1 * 4 + 1  # the coarse map, unresized
    expect = torch.nn.functional.interpolate(fine, size=(4, 4), mode="bilinear", align_corners=True)[0, 0]
    assert torch.allclose(att[0, 0], expect / expect.sum())


def test_dual_attention_loss_is_minimal_when_logits_agree_with_the_labels():
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    att = torch.full((2, 2, 3, 3), 1 / 9)
    right = losses.dual_attention_logits(20 * (2 * labels - 1)[..., None, None].expand(2, 2, 3, 3), att)
    assert torch.allclose(right, 20 * (2 * labels - 1))  # a uniform map gives the CAM's mean
    good, wrong = losses.dual_attention_loss(right, labels), losses.dual_attention_loss(-right, labels)
    assert 0 <= float(good) < 1e-8 and float(wrong) > 10
    assert float(losses.dual_attention_loss(torch.zeros(2, 2), labels)) == pytest.approx(math.log(2))


@pytest.mark.parametrize("detach", [False, True])
def test_dual_attention_passes_the_image_label_gradient_into_the_detection_branch(detach):
    model = _tiny(num_classes=2)
    torch.nn.init.normal_(model.global_head.weight, std=0.5)  # trained a little: the CAMs are not zero
    out = model(torch.rand(2, 1, 112, 112))
    att = losses.detection_attention(model.level_maps(out), tuple(out.cam.shape[-2:]), detach=detach)
    loss = losses.dual_attention_loss(losses.dual_attention_logits(out.cam, att), torch.tensor([[1.0, 0], [0, 1]]))
    loss.backward()
    grad = model.net.head.classification_head.cls_logits.weight.grad
    if detach:  # the control: without alignment the image labels never reach the detection subnet
        assert grad is None or not grad.abs().sum()
    else:
        assert grad is not None and float(grad.abs().sum()) > 0
    assert float(model.global_head.weight.grad.abs().sum()) > 0


# --------------------------------------------------------------------------------------------
# Global prototype alignment
# --------------------------------------------------------------------------------------------

def test_prototypes_follow_an_ema_with_decay_07_and_start_without_decay():
    bank = losses.PrototypeBank(3, 2)
    labels = torch.tensor([[1.0, 0, 0], [1.0, 1, 0]])
    feats = torch.tensor([[[1.0, 1], [9, 9], [9, 9]], [[3.0, 3], [2, 4], [9, 9]]])
    bank.update(feats, labels)
    assert torch.allclose(bank.prototypes[0], torch.tensor([2.0, 2])) and torch.allclose(bank.prototypes[1], torch.tensor([2.0, 4]))
    assert bank.seen.tolist() == [True, True, False] and not bank.prototypes[2].any()  # absent: untouched
    bank.update(torch.zeros(1, 3, 2), torch.tensor([[1.0, 0, 0]]))
    assert torch.allclose(bank.prototypes[0], 0.7 * torch.tensor([2.0, 2]))
    assert torch.allclose(bank.prototypes[1], torch.tensor([2.0, 4]))  # absent class: no decay towards zero
    weighted = losses.PrototypeBank(3, 2)
    weighted.update(feats, labels, probs=torch.tensor([[0.75, 1, 1], [0.25, 1, 1]]))
    assert torch.allclose(weighted.prototypes[0], torch.tensor([1.5, 1.5]))  # weighted by the global probabilities


def test_prototype_losses_are_zero_where_they_should_be_and_positive_otherwise():
    bank = losses.PrototypeBank(2, 4)
    labels = torch.tensor([[1.0, 0], [0, 1.0]])
    far = torch.zeros(2, 2, 4)
    far[0, 0], far[1, 1] = 0.0, 5.0  # class 0 at the origin, class 1 far away
    bank.update(far, labels)
    intra, inter = losses.prototype_losses(far, labels, bank)
    assert float(intra) == 0 and float(inter) == 0  # on the prototypes and >= margin from the others
    near = far.clone()
    near[0, 0] += 0.3  # off its prototype, still far from the other
    intra, inter = losses.prototype_losses(near, labels, bank)
    assert float(intra) == pytest.approx(0.09 / 2) and float(inter) == 0  # mean over the two classes present
    close = far.clone()
    close[1, 1] = 0.2  # class 1's feature inside the margin of class 0's prototype
    intra, inter = losses.prototype_losses(close, labels, bank)
    s = 0.2
    assert float(inter) == pytest.approx(((1 - s) ** 4) / 2, rel=1e-5)  # one close pair out of two
    empty = losses.prototype_losses(far, torch.zeros(2, 2), bank)
    assert [float(v) for v in empty] == [0.0, 0.0]


# --------------------------------------------------------------------------------------------
# Soft focal loss and the mean teacher
# --------------------------------------------------------------------------------------------

def _anchors():
    return torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 12.0], [0, 0, 10, 14.0], [50, 50, 60, 60]])


def test_soft_focal_loss_is_zero_where_the_student_matches_the_teacher_and_positive_otherwise():
    teacher_probs = torch.tensor([[0.9, 0.1], [0.6, 0.2], [0.3, 0.3], [0.05, 0.01]])
    box = torch.tensor([[0.0, 0, 10, 10]])
    same = torch.logit(teacher_probs)
    assert float(losses.soft_focal_loss(same, teacher_probs, _anchors(), box)) == pytest.approx(0, abs=1e-7)
    other = torch.zeros(4, 2)
    assert float(losses.soft_focal_loss(other, teacher_probs, _anchors(), box)) > 0
    assert float(losses.soft_focal_loss(other, teacher_probs, _anchors(), torch.zeros(0, 4))) == 0  # no teacher box


def test_soft_focal_loss_ignores_the_iou_band_and_normalises_by_positive_anchors():
    p_t = torch.full((4, 1), 0.5)
    box = torch.tensor([[0.0, 0, 10, 10]])  # IoU with the anchors: 1, 0.83, 0.71, 0
    logits = torch.zeros(4, 1)
    logits[2] = 3.0  # the only disagreement sits on anchor 2
    iou_band = torch.tensor([[0.0, 0, 10, 22.0]])  # IoU 0.45 with the box: anchor 2 moves into the band
    base = losses.soft_focal_loss(logits, p_t, _anchors(), box)
    a = 0.05 + 0.5 * 0.9
    p_s = torch.sigmoid(torch.tensor(3.0))
    term = a * (0.5 - p_s) ** 2 * torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor(3.0), torch.tensor(0.5))
    assert float(base) == pytest.approx(float(term) / 3, rel=1e-5)  # three anchors at IoU >= 0.5
    moved = torch.cat([_anchors()[:2], iou_band, _anchors()[3:]])
    assert float(losses.soft_focal_loss(logits, p_t, moved, box)) == pytest.approx(0, abs=1e-7)


def test_ema_teacher_follows_the_student_with_the_stated_decay():
    student = _tiny(num_classes=2)
    teacher = ema.make_teacher(student)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    before = [p.clone() for p in teacher.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    rate = ema.ema_update(teacher, student)  # decay 0.99 (the default)
    assert rate == 0.99 == ema.TEACHER_DECAY
    for t, t0, s in zip(teacher.parameters(), before, student.parameters()):
        assert torch.allclose(t, 0.99 * t0 + 0.01 * s, atol=1e-6)
    gap = [s - t for t, s in zip(teacher.parameters(), student.parameters())]
    for _ in range(10):
        ema.ema_update(teacher, student, step=1000)
    for g, t, s in zip(gap, teacher.parameters(), student.parameters()):
        assert torch.allclose(s - t, g * 0.99 ** 10, atol=1e-5)
    assert ema.ema_rate(0) == 0.0 and ema.ema_rate(1) == 0.5 and ema.ema_rate(10 ** 6) == 0.99  # official warm-up


# --------------------------------------------------------------------------------------------
# The whole objective on a mixed batch, and a few training steps
# --------------------------------------------------------------------------------------------

def test_teacher_boxes_keep_confident_detections_of_the_labelled_classes():
    model = _tiny(num_classes=2)
    model.eval()
    with torch.no_grad():  # every anchor confident for class 1 only
        head = model.net.head.classification_head.cls_logits
        head.bias.copy_(torch.tensor([-9.0, 9.0] * 9))
    out = model(torch.rand(2, 1, 112, 112))
    unfiltered, filtered = teacher_boxes(model, out), teacher_boxes(model, out, torch.tensor([[1.0, 0], [0, 1.0]]))
    assert len(unfiltered[0]["boxes"]) > 0 and set(unfiltered[0]["labels"].tolist()) == {1}
    assert len(filtered[0]["boxes"]) == 0 and len(filtered[1]["boxes"]) == len(unfiltered[1]["boxes"])


def test_oxnet_objective_runs_every_term_and_a_few_steps_reduce_the_loss():
    torch.manual_seed(0)
    split = toy_split(16, resolutions=(224, 112), seed=3)
    codes = supervision_regime(len(split), 0.5, 0.25, seed=0, strata=split.mcct)
    batches = list(two_stream_sampler(codes, 4, 4, seed=0))
    student = _tiny(num_classes=3)
    teacher = ema.make_teacher(student)
    objective = OXnetObjective(3, student.net.backbone.last_channels)
    batch = omni_batch(split, batches[0], 112, codes)
    assert (batch.supervision[:4] == 0).all() and (batch.supervision[4:] != 0).all()
    terms = objective(student, teacher, batch)
    assert set(terms) >= {"detection", "regression", "dual", "intra", "inter", "soft_focal", "soft_regression", "loss"}
    assert all(torch.isfinite(v).all() for v in terms.values())
    opt = torch.optim.Adam(student.parameters(), lr=2e-3)
    watched = ("detection", "regression", "dual")

    def supervised(t):
        return float(sum(t[k].detach() for k in watched))

    first = supervised(terms)
    for step in range(12):
        terms = objective(student, teacher, batch)
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        ema.ema_update(teacher, student, step=step)
    with torch.no_grad():
        last = supervised(objective(student, teacher, batch))
    assert last < 0.8 * first
    off = OXnetObjective(3, student.net.backbone.last_channels, OXnetWeights(soft_focal=0, soft_regression=0))
    assert float(off(student, None, batch)["soft_focal"].detach()) == 0  # no teacher: the supervised terms only


def test_a_confident_teacher_drives_the_soft_focal_loss_on_the_images_without_boxes():
    split = toy_split(8, resolutions=(224, 112), seed=4)
    codes = supervision_regime(len(split), 0.25, 0.0, seed=1)  # 2 with boxes, 6 unlabelled: no class filter
    student = _tiny(num_classes=3)
    teacher = ema.make_teacher(student)
    with torch.no_grad():
        teacher.net.head.classification_head.cls_logits.bias.copy_(torch.tensor([4.0, -9.0, -9.0] * 9))
    batch = omni_batch(split, list(range(8)), 112, codes)
    terms = OXnetObjective(3, student.net.backbone.last_channels)(student, teacher, batch)
    assert float(terms["soft_focal"].detach()) > 0 and float(terms["soft_regression"].detach()) >= 0
    terms["loss"].backward()
    assert float(student.net.head.classification_head.cls_logits.weight.grad.abs().sum()) > 0
