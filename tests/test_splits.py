"""In-memory splits (mlcak_lib.splits): batches, subsets, materialize and area-resized views."""

import pytest
import torch

from mlcak_lib.datasets import SynthCXRDataset
from mlcak_lib.resize import area_resize
from mlcak_lib.splits import InMemorySplit, materialize, with_views
from toy_data import toy_split


def test_batch_and_subset():
    split = toy_split(10, resolutions=(224, 28), seed=0)
    batch = split.batch(torch.tensor([3, 1]), 28)
    assert batch["x"].shape == (2, 1, 28, 28) and batch["split"] is split and batch["resolution"] == 28
    assert torch.equal(batch["mlct"], split.mlct[[3, 1]]) and batch["index"].tolist() == [3, 1]
    sub = split.subset([4, 2, 2])
    assert len(sub) == 3 and sub.resolutions == [28, 224] and sub.class_names == split.class_names
    assert torch.equal(sub.images[224][0], split.images[224][4]) and torch.equal(sub.boxes[1], split.boxes[2])
    counts = split.label_counts()
    assert counts["abnormal (MCCT)"] == int(split.mcct.sum()) and set(split.class_names) < set(counts)


def test_with_views_adds_and_keeps_low_resolutions():
    full = toy_split(6, resolutions=(224,), seed=1)
    view = with_views(full, (56, 224))
    assert view.resolutions == [56, 224] and 56 in full.images  # kept for the next call
    assert torch.allclose(view.images[56], area_resize(full.images[224], 56))
    assert with_views(full, (56,)).images[56] is full.images[56]
    assert with_views(full, (28,)).resolutions == [28]
    with pytest.raises(ValueError, match="above the split's images"):
        with_views(full, (448,))


def test_materialize_reads_items_and_asks_the_simulator():
    ds = SynthCXRDataset("val", resolutions=(), size=4, seed=2)
    split = materialize(ds, (224, 28))
    assert isinstance(split, InMemorySplit) and len(split) == 4 and split.name == "val"
    assert split.images[224].shape == (4, 1, 224, 224) and split.images[28].shape == (4, 1, 28, 28)
    assert len(split.boxes) == 4 and split.class_names == list(ds.class_names)
    item = ds[1]
    assert torch.allclose(split.images[224][1], item["image"], atol=1e-3)  # the cache stores float16
    assert torch.equal(split.mlct[1], item["mlct"]) and int(split.mcct[1]) == int(item["mcct"])

    class ImageLevel(torch.utils.data.Dataset):
        has_boxes = False
        class_names = ("x",)
        split = "test"

        def __len__(self):
            return 2

        def __getitem__(self, i):
            return {"image": torch.full((1, 224, 224), 0.5), "mlct": torch.ones(1), "mcct": torch.tensor(1)}

    plain = materialize(ImageLevel(), (28,))
    assert plain.boxes == [] and plain.name == "test" and plain.images[28].shape == (2, 1, 28, 28)
