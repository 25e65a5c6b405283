"""The training loop: determinism, loss hook, early stopping (the load-or-train cache: tests/test_cache.py)."""

import torch

from mlcak_lib import train as T
from mlcak_lib.models import build_vit
from toy_data import toy_split

TINY = dict(depth=1, embed_dim=32, num_heads=2, stem_channels=(8, 16))
FAST = T.TrainConfig(epochs=2, batch_size=16, lr=2e-3, warmup_epochs=0.5, patience=None, seed=0)


def _model(seed=0):
    return build_vit(28, 3, seed=seed, **TINY)


def test_fit_history_and_determinism():
    data = toy_split(48, resolutions=(28,), seed=1)
    val = toy_split(32, resolutions=(28,), seed=2)
    a, b = _model(), _model()
    hist_a = T.fit(a, data, val, config=FAST, progress=False)
    hist_b = T.fit(b, data, val, config=FAST, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert [h["epoch"] for h in hist_a] == [1, 2]
    assert {"train_loss", "train_bce", "train_ce", "val_loss", "val_mcct_auroc", "val_mlct_macro_auroc", "lr"} <= set(hist_a[0])
    assert hist_a == [{**h, "seconds": hist_a[i]["seconds"]} for i, h in enumerate(hist_b)]
    assert sum(h["best"] for h in hist_a) == 1
    c = _model()
    T.fit(c, data, val, config=FAST.replace(seed=1), progress=False)
    assert not all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))
    assert not torch.are_deterministic_algorithms_enabled()  # global flag restored


def test_custom_loss_fn_and_objective_hooks():
    data = toy_split(32, resolutions=(28, 224), seed=3)
    seen = {}

    def loss_fn(batch, outputs, model):
        seen["hr"] = batch["split"].images[224][batch["index"]].shape  # other views reachable via the split
        loss = outputs["mcct"].pow(2).mean()
        return loss, {"sq": loss}  # 0-d tensors are fine in parts

    hist = T.fit(_model(), data, None, objective=loss_fn, config=FAST, progress=False)
    assert seen["hr"] == (16, 1, 224, 224)
    assert "train_sq" in hist[0] and hist[-1]["best"]

    class Counting(T.SupervisedObjective):
        calls = 0

        def setup(self, model, train):
            super().setup(model, train)
            Counting.calls += 1

    obj = Counting()
    T.fit(_model(), data, None, objective=obj, config=FAST, progress=False)
    assert Counting.calls == 1 and obj.pos_weight.shape == (3,)


def test_imbalance_weights():
    mlct = torch.tensor([[1, 0, 0], [0, 0, 0], [0, 0, 1], [0, 0, 1]]).float()
    pw, cw = T.imbalance_weights(mlct, torch.tensor([1, 0, 1, 1]), max_pos_weight=10)
    assert pw.tolist() == [3.0, 1.0, 1.0]  # 3 neg / 1 pos; no positives -> 1; 2/2 -> 1
    assert torch.allclose(cw, torch.tensor([2.0, 2 / 3]))


def test_early_stopping_restores_best_weights():
    data = toy_split(32, resolutions=(28,), seed=4)
    model = _model()
    hist = T.fit(model, data, data, config=FAST.replace(epochs=6, patience=1, lr=0.0), progress=False)
    # lr 0: the score never improves after epoch 1, so training stops at epoch 2 and keeps epoch 1
    assert len(hist) == 2 and hist[0]["best"] and not hist[1]["best"]


def test_schedule():
    lr = [T.warmup_cosine(s, 100, 10, 0.0) for s in range(100)]
    assert lr[0] == 0.1 and lr[9] == 1.0 and abs(lr[10] - 1.0) < 1e-9 and lr[-1] < 0.01
