"""mlcak_lib.synth.anatomy: the per-film anatomy table, its ranges, strength and fixed random draws."""

import numpy as np
import pytest

from mlcak_lib.synth import SynthConfig, SynthCXR
from mlcak_lib.synth.anatomy import (
    ANATOMY_TABLE,
    N_DRAWS,
    PARAMS,
    draw_anatomy,
    table_markdown,
)


def test_table_documented():
    names = [p.name for p in ANATOMY_TABLE]
    assert len(set(names)) == len(names) and names[0] == "view"
    for want in ("tilt_deg", "scale", "shift_x_mm", "shift_y_mm", "inspiration_mm", "soft_tissue_mm", "warp_mm"):
        assert want in PARAMS
    for p in ANATOMY_TABLE:
        assert p.low < p.high and (p.low <= p.neutral <= p.high or p.name == "warp_mm"), p.name
        assert len(p.meaning) > 20 and len(p.source) > 20, p.name
    assert "heart" not in names and table_markdown().count("\n") == len(ANATOMY_TABLE) + 1


def test_500_draws_inside_their_ranges_and_spread_across_them():
    rng = np.random.default_rng(0)
    draws = [draw_anatomy(rng, 1.0, 5) for _ in range(500)]
    for p in ANATOMY_TABLE:
        x = np.array([d.as_dict()[p.name] for d in draws], float)
        hi = p.high if p.name != "view" else 4
        assert x.min() >= p.low and x.max() <= hi, p.name
        span = hi - p.low
        assert x.min() < p.low + 0.05 * span and x.max() > hi - 0.05 * span, p.name  # the whole range is used
        if p.name == "view":
            assert set(x.astype(int)) == set(range(5))
    warp = np.stack([d.warp for d in draws])
    assert warp.shape == (500, 2, 5, 5)
    sd = np.array([d.warp.std() for d in draws]) / np.array([d.warp_mm for d in draws])
    assert 0.6 < sd.mean() < 1.4  # the warp field has the drawn standard deviation


def test_strength_scales_towards_the_bare_view():
    a = draw_anatomy(np.random.default_rng(3), 0.0, 5)
    assert a.view == 0 and not a.warp.any()
    for p in ANATOMY_TABLE[1:]:
        assert a.as_dict()[p.name] == pytest.approx(p.neutral)
    half = [draw_anatomy(np.random.default_rng(i), 0.5, 5).inspiration_mm for i in range(200)]
    full = PARAMS["inspiration_mm"]
    assert 0.5 * full.low <= min(half) and max(half) <= 0.5 * full.high


@pytest.mark.parametrize("strength, views", [(0.0, 5), (1.0, 5), (0.3, 3), (2.0, 1)])
def test_fixed_number_of_draws(strength, views):
    """Whatever the strength or the patient's number of views, the stream moves on by the same amount."""
    rng = np.random.default_rng(11)
    draw_anatomy(rng, strength, views)
    counted = np.random.default_rng(11)  # N_DRAWS says how many: uniforms for the table, normals for the warp
    counted.random(len(ANATOMY_TABLE))
    counted.standard_normal(N_DRAWS - len(ANATOMY_TABLE))
    assert counted.bit_generator.state == rng.bit_generator.state


def test_generator_reports_and_uses_the_draws():
    cfg = SynthConfig(patients={"train": ("cip_ct64",)}, image_size=64)
    s = SynthCXR(cfg).generate(2, "train", 0, keep_masks=False)
    a = s["params"]["anatomy"]
    assert set(a) == set(PARAMS)
    assert s["params"]["view"] == a["view"] and s["params"]["soft_tissue_mm"] == pytest.approx(a["soft_tissue_mm"])
    assert s["params"]["rotation_deg"] == pytest.approx(a["tilt_deg"])
    # two patients' films at the same index draw the same anatomy (the patient pick has its own stream)
    other = SynthCXR(SynthConfig(patients={"train": ("lidc0001",)}, image_size=64)).generate(2, "train", 0, keep_masks=False)
    assert other["params"]["anatomy"] == a
