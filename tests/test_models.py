"""Teacher/student factory: matched token grids, heads, normalisation, cost table."""

import pytest
import torch

from mlcak_lib import models
from mlcak_lib.cost import cost_table, count_flops


@pytest.mark.parametrize("resolution,patch", [(224, 32), (112, 16), (56, 8), (28, 4)])
def test_matched_token_grid_default(resolution, patch):
    m = models.build_vit(resolution, num_classes=5, profile="default", seed=0)
    assert m.patch_size == patch and m.grid == 7
    out = m(torch.rand(2, 1, resolution, resolution))
    assert out["mlct"].shape == (2, 5)
    assert out["mcct"].shape == (2, 2)
    assert out["tokens"].shape == (2, 49, models.ARCHITECTURES["default"]["embed_dim"])
    assert "local" not in out


def test_full_profile_patch_sizes_without_building():
    grid = models.ARCHITECTURES["full"]["grid"]
    assert grid == 14
    assert [models.patch_size_for(r, grid) for r in (224, 28)] == [16, 2]
    with pytest.raises(ValueError):
        models.patch_size_for(100, 7)


def test_patch_stem_and_local_head_slot():
    m = models.build_vit(56, num_classes=3, stem="patch", depth=1, seed=0)
    m.local_head = torch.nn.Linear(m.vit.embed_dim, 3)
    out = m(torch.rand(1, 1, 56, 56))
    assert out["local"].shape == (1, 49, 3)


def test_seeded_build_is_reproducible_and_normalisation_is_internal():
    a = models.build_teacher(4, seed=3)
    b = models.build_teacher(4, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert float(a.mean) == 0.5 and float(a.std) == 0.25
    with pytest.raises(ValueError):
        a(torch.rand(1, 1, 28, 28))  # the teacher only takes 224-pixel images


def test_unknown_override_is_an_error():
    with pytest.raises(TypeError):
        models.architecture("default", width=3)


def test_cost_table_without_latency():
    table = cost_table(lambda r: models.build_vit(r, 3, seed=0, depth=1), resolutions=(224, 28), latency=False)
    assert list(table["tokens"]) == [49, 49]
    assert (table["params"] > 0).all() and (table["gflops"] > 0).all()
    assert table["latency_ms"].isna().all()
    m = models.build_vit(28, 3, seed=0, depth=1)
    assert count_flops(m, 28) == count_flops(m, 28)
