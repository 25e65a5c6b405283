"""SynthCXRDataset follows the sample contract; collate keeps boxes as lists; cache and materialize agree."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mlcak_lib.datasets import SPLIT_SIZES, SynthCXRDataset, collate_with_boxes, generate_split
from mlcak_lib.synth import LESION_CLASSES


def test_item_follows_the_sample_contract():
    ds = SynthCXRDataset("train", resolutions=(28, 56, 112), size=6, seed=0, token_grid=14)
    assert len(ds) == 6 and ds.class_names == list(LESION_CLASSES)
    for i in range(len(ds)):
        item = ds[i]
        assert item["image"].shape == (1, 224, 224) and item["image"].dtype == torch.float32
        assert set(item["lowres"]) == {28, 56, 112}
        for r, low in item["lowres"].items():
            assert low.shape == (1, r, r) and low.dtype == torch.float32
        assert torch.allclose(item["lowres"][28].mean(), item["image"].mean(), atol=1e-4)  # area averaging
        C = len(ds.class_names)
        assert item["mlct"].shape == (C,) and item["mlct"].dtype == torch.float32
        assert item["mcct"].dtype == torch.int64 and item["mcct"].ndim == 0
        assert int(item["mcct"]) == int(item["mlct"].max() > 0)
        K = item["boxes"].shape[0]
        assert item["boxes"].shape == (K, 4) and item["box_labels"].shape == (K,) and item["box_mm"].shape == (K,)
        assert item["boxes"].dtype == torch.float32 and item["box_labels"].dtype == torch.int64
        assert item["index"] == i
        assert item["token_map"].shape == (C, 14, 14)
        if K:
            assert (item["token_map"].sum(dim=(1, 2)) > 0).float().sum() == item["mlct"].sum()


def test_collate_keeps_boxes_as_lists():
    ds = SynthCXRDataset("val", resolutions=(28,), size=8)
    batch = next(iter(DataLoader(ds, batch_size=4, collate_fn=collate_with_boxes)))
    assert batch["image"].shape == (4, 1, 224, 224) and batch["lowres"][28].shape == (4, 1, 28, 28)
    assert batch["mlct"].shape == (4, len(ds.class_names)) and batch["mcct"].shape == (4,)
    assert isinstance(batch["boxes"], list) and len(batch["boxes"]) == 4
    assert all(b.shape[1] == 4 for b in batch["boxes"])
    assert isinstance(batch["box_labels"], list) and isinstance(batch["box_mm"], list)
    assert batch["index"].tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="empty batch"):
        collate_with_boxes([])


def test_deterministic_and_splits_differ():
    a = SynthCXRDataset("test", size=3, seed=7)[2]["image"]
    b = SynthCXRDataset("test", size=3, seed=7)[2]["image"]
    c = SynthCXRDataset("train", size=3, seed=7)[2]["image"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_materialize_matches_items_and_cache_roundtrip():
    ds = SynthCXRDataset("val", resolutions=(28,), size=5, seed=1, token_grid=7)
    m = ds.materialize()
    assert m["images"].shape == (5, 1, 224, 224) and m["lowres"][28].shape == (5, 1, 28, 28)
    assert m["token_map"].shape == (5, len(ds.class_names), 7, 7)
    assert torch.equal(m["images"][3], SynthCXRDataset("val", size=5, seed=1)[3]["image"])
    cached = SynthCXRDataset("val", resolutions=(28,), size=5, seed=1, cache=True)
    item = cached[3]  # builds the cache (float16 on disk)
    assert cached.cache_path().is_dir()
    assert torch.allclose(item["image"], m["images"][3], atol=1e-3)
    assert torch.equal(item["mlct"], m["mlct"][3]) and torch.equal(item["boxes"], m["boxes"][3])
    again = SynthCXRDataset("val", resolutions=(28,), size=5, seed=1, cache=True).materialize()
    assert torch.allclose(again["images"], m["images"], atol=1e-3)


def test_generate_split_and_profile_sizes():
    data = generate_split("train", size=4, seed=0)
    assert data["images"].shape == (4, 224, 224) and len(data["boxes"]) == 4
    assert SynthCXRDataset("train").size == SPLIT_SIZES["default"]["train"]
    assert SynthCXRDataset("test", profile="full").size == SPLIT_SIZES["full"]["test"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown split"):
        SynthCXRDataset("dev")
    with pytest.raises(ValueError, match="only downsamples"):
        SynthCXRDataset("train", resolutions=(448,))
    with pytest.raises(ValueError, match="does not divide"):
        SynthCXRDataset("train", token_grid=9)
    with pytest.raises(IndexError):
        SynthCXRDataset("train", size=2)[5]
    with pytest.raises(ValueError, match="Unknown profile"):
        SynthCXRDataset("train", profile="huge")
