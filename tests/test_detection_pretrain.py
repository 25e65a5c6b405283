"""The detectors' pretrained backbone (mlcak_lib.detection.pretrain, notebook 07, issue 16): the classifier has the
detector's stages, pretraining keeps its best validated epoch, a detector copies the stages, its cache key names
the backbone, and a detector that needs one refuses to start without it."""

import pytest
import torch
from toy_data import toy_split

from mlcak_lib.cache import config_hash
from mlcak_lib.detection import pretrain, recipe

TINY = recipe.TINY_TRAINING


def _classifier(resolution=112, seed=0):
    torch.manual_seed(seed)
    return pretrain.BackboneClassifier(3, resolution, TINY.widths)


def test_the_classifier_has_the_detectors_stages_and_scores_each_class():
    clf = _classifier()
    detector = recipe.build_detector(3, 112, seed=0, **TINY.architecture)
    assert clf(torch.rand(2, 1, 112, 112)).shape == (2, 3)
    assert clf.stages.state_dict().keys() == detector.net.backbone.stages.state_dict().keys()
    shapes = {k: v.shape for k, v in clf.stages.state_dict().items()}
    assert shapes == {k: v.shape for k, v in detector.net.backbone.stages.state_dict().items()}


def test_a_detector_starts_from_the_pretrained_stages_and_only_from_them():
    clf = _classifier(seed=3)
    detector = recipe.build_detector(3, 112, seed=0, **TINY.architecture)
    fpn_before = {k: v.clone() for k, v in detector.net.backbone.fpn.state_dict().items()}
    detector.load_backbone(clf.stages)
    got = detector.net.backbone.stages.state_dict()
    assert all(torch.equal(got[k], v) for k, v in clf.stages.state_dict().items())
    assert all(torch.equal(detector.net.backbone.fpn.state_dict()[k], v) for k, v in fpn_before.items())


def test_pretraining_learns_the_labels_and_keeps_the_best_epoch(monkeypatch):
    split = toy_split(48, resolutions=(112,))
    clf = _classifier()
    scores = iter([0.9, 0.4, 0.6])
    seen = []

    def score(model, *args, **kwargs):
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(scores)

    monkeypatch.setattr(pretrain, "classifier_auroc", score)
    history = pretrain.pretrain(clf, split, split, 112, pretrain.BackbonePretraining(epochs=3, batch_size=8))
    assert [h["epoch"] for h in history] == [1, 2, 3] and [h.get("best", False) for h in history] == [True, False, False]
    assert all(torch.equal(clf.state_dict()[k], v) for k, v in seen[0].items())  # epoch 1's weights, the best


def test_pretraining_on_the_toy_split_beats_chance():
    split = toy_split(96, resolutions=(112,))
    clf = _classifier()
    before = pretrain.classifier_auroc(clf, split, 112)
    pretrain.pretrain(clf, split, None, 112, pretrain.BackbonePretraining(epochs=4, batch_size=16, lr=3e-3))
    after = pretrain.classifier_auroc(clf, split, 112)
    assert after > 0.75 and after > before


def test_pretraining_refuses_a_pool_smaller_than_a_batch():
    with pytest.raises(ValueError, match="fewer than one batch"):
        pretrain.pretrain(_classifier(), toy_split(4, resolutions=(112,)), None, 112, pretrain.BackbonePretraining(batch_size=8))


def test_a_pretrained_detector_needs_its_backbone_and_the_backbone_enters_the_key(monkeypatch):
    split = toy_split(16, resolutions=(112,))
    seen = []

    def fake(name, cfg, build, train, cache_dir=None, load_only=False, code=None, **_):
        seen.append((name, config_hash(name, cfg, code), build()))
        return None, [], {"hash": seen[-1][1], "cache_hit": True, "train_seconds": 0.0}

    monkeypatch.setattr(recipe, "load_or_train", fake)
    args = dict(variant="box-only", box_fraction=0.5, resolution=112, seed=0, splits={"train": split},
                data_desc={"dataset": "toy"}, profile="default", config=TINY.replace(pretrained=True))
    with pytest.raises(ValueError, match="pretrained backbone"):
        recipe.get_detector(**args)
    clf_a, clf_b = _classifier(seed=1), _classifier(seed=2)
    recipe.get_detector(**args, backbone=(clf_a, "aaaa"))
    recipe.get_detector(**args, backbone=(clf_b, "bbbb"))
    assert seen[0][1] != seen[1][1] and seen[0][0].endswith("-r112-s0")
    built = seen[0][2].net.backbone.stages.state_dict()
    assert all(torch.equal(built[k], v) for k, v in clf_a.stages.state_dict().items())


def test_the_backbone_key_changes_with_the_pool_and_the_training():
    base = pretrain.backbone_key({"seed": 1}, 112, 9, (8, 8), False, pretrain.PRETRAINING)
    assert base == pretrain.backbone_key({"seed": 1}, 112, 9, (8, 8), False, pretrain.PRETRAINING)
    others = [pretrain.backbone_key({"seed": 2}, 112, 9, (8, 8), False, pretrain.PRETRAINING),
              pretrain.backbone_key({"seed": 1}, 224, 9, (8, 8), False, pretrain.PRETRAINING),
              pretrain.backbone_key({"seed": 1}, 112, 9, (8, 8), False, pretrain.BackbonePretraining(epochs=2))]
    assert all(o != base for o in others)
