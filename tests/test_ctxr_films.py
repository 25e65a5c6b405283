"""Notebook 08's X-ray pool reports (mlcak_lib.ctxr.films): a simulated film's boxes become findings."""

import numpy as np
import pytest

from mlcak_lib.ctxr.films import findings_from_film, findings_from_sample, lung_geometry
from mlcak_lib.ctxr.reports import Finding, parse, render
from mlcak_lib.synth import SynthConfig, SynthCXR
from mlcak_lib.synth.config import LESION_CLASSES

C = list(LESION_CLASSES)


def _lungs():
    """Two rectangular lungs, rows 20-109: the patient's right on the viewer's left (columns 10-49)."""
    mask = np.zeros((128, 128), bool)
    mask[20:110, 10:50] = True
    mask[20:110, 70:120] = True
    return mask


def test_lung_geometry_finds_the_mediastinum():
    midline, top, bottom = lung_geometry(_lungs())
    assert 50 <= midline < 70 and (top, bottom) == (20, 109)
    with pytest.raises(ValueError):
        lung_geometry(np.zeros((8, 8), bool))


def test_boxes_become_sided_zoned_sized_findings():
    boxes = np.array([[20, 25, 30, 35],     # nodule: viewer's left, top third -> right upper zone
                      [80, 95, 90, 105],    # calcification: viewer's right, bottom third -> left lower zone
                      [15, 90, 45, 108], [75, 90, 115, 108],  # effusion on both sides -> bilateral
                      [45, 55, 75, 75],     # cardiomegaly: no side
                      [72, 50, 100, 70]])   # opacity: left, middle third -> lingula
    labels = [C.index(n) for n in ("Nodule/Mass", "Calcification", "Pleural effusion", "Pleural effusion",
                                   "Cardiomegaly", "Lung Opacity")]
    found = findings_from_film(boxes, labels, [12.4, 40.0, 80, 80, 100, 50], C, _lungs())
    assert set(found.findings) == {Finding("Nodule/Mass", "right", "upper", 12), Finding("Calcification", "left", "lower", 16),
                                   Finding("Pleural effusion", "bilateral"), Finding("Cardiomegaly"),
                                   Finding("Lung Opacity", "left", "middle")}
    assert found.negatives == ("Pneumothorax",)  # standard negatives of the absent classes
    assert "lingula" in render(found, 0).lower()


def test_every_simulated_film_gets_a_parseable_report_with_its_classes():
    sim = SynthCXR(SynthConfig())
    for i in range(12):
        sample = sim.generate(i, "train", seed=0)
        found = findings_from_sample(sample, sim.class_names)
        assert set(found.labels) == {sim.class_names[k] for k in sample["box_labels"]}
        assert found.normal == (sample["mcct"] == 0)
        assert parse(render(found, i)) == found
