"""Notebook 08's report grammar (mlcak_lib.ctxr.reports): findings render to text and parse back exactly."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcak_lib.ctxr.reports import (MASS_MM, SPECS, STANDARD_NEGATIVES, ZONES, Finding, Findings, parse,
                                    random_findings, render, with_standard_negatives)
from mlcak_lib.synth.config import LESION_CLASSES, SMALL_CLASSES


def test_the_grammar_covers_exactly_the_simulators_classes():
    assert list(SPECS) == list(LESION_CLASSES)
    assert {c for c, s in SPECS.items() if s.size_mm} == set(SMALL_CLASSES)
    assert all(len(s.phrasings) >= 3 for s in SPECS.values())


@st.composite
def findings_strategy(draw):
    found = []
    for label in draw(st.lists(st.sampled_from(LESION_CLASSES), max_size=4)):
        spec = SPECS[label]
        sides = [s for s in spec.sides if not (spec.region == "lobe" and s == "bilateral")]
        side = draw(st.sampled_from(sides)) if sides else None
        zone = draw(st.sampled_from(ZONES)) if spec.region else None
        size = draw(st.integers(*spec.size_mm)) if spec.size_mm else None
        found.append(Finding(label, side, zone, size))
    absent = [c for c in LESION_CLASSES if c not in {f.label for f in found}]
    negatives = draw(st.lists(st.sampled_from(absent), unique=True)) if absent else []
    return Findings(tuple(found), tuple(negatives))


@settings(max_examples=300, deadline=None)
@given(findings_strategy(), st.integers(0, 2**32 - 1))
def test_parse_inverts_render_for_every_seed(findings, seed):
    assert parse(render(findings, seed)) == findings


def test_random_studies_round_trip_and_vary_in_phrasing():
    rng = np.random.default_rng(0)
    texts = set()
    for i in range(300):
        findings = random_findings(rng)
        text = render(findings, seed=i)
        assert parse(text) == findings
        texts.add(text)
    one = Findings((Finding("Nodule/Mass", "right", "upper", 12),))
    assert len({render(one, s) for s in range(50)}) >= 4  # 3 phrasings x (mm or cm)


def test_normal_studies_render_to_a_few_near_identical_texts():
    normal = with_standard_negatives([])
    assert normal.normal and normal.negatives == tuple(sorted(STANDARD_NEGATIVES, key=LESION_CLASSES.index))
    texts = {render(normal, s) for s in range(200)}
    assert len(texts) == 4
    assert all("lungs are clear" in t.lower() and "pneumothorax" in t for t in texts)


def test_wording_follows_the_finding():
    assert "mass" in render(Findings((Finding("Nodule/Mass", "left", "lower", MASS_MM),)), 0)
    assert "nodule" in render(Findings((Finding("Nodule/Mass", "left", "lower", MASS_MM - 1),)), 0)
    assert "lingula" in render(Findings((Finding("Lung Opacity", "left", "middle"),)), 0).lower()
    assert "both upper zones" in render(Findings((Finding("Pleural thickening", "bilateral", "upper"),)), 0)
    text = render(with_standard_negatives([Finding("Pleural effusion", "right")]), 0)
    assert "right" in text.lower() and "no" in text.lower() and parse(text).negatives == ("Lung Opacity", "Cardiomegaly", "Pneumothorax")


@pytest.mark.parametrize("args", [("Cardiomegaly", "left"), ("Nodule/Mass", "right", "upper"),
                                  ("Nodule/Mass", "right", "upper", 99), ("Lung Opacity", "bilateral", "upper"),
                                  ("Pneumothorax", "right", "upper"), ("Pleural effusion",), ("No finding",)])
def test_invalid_findings_are_refused(args):
    with pytest.raises(ValueError):
        Finding(*args)


def test_contradictions_and_foreign_sentences_are_refused():
    with pytest.raises(ValueError, match="both present and negated"):
        Findings((Finding("Cardiomegaly"),), ("Cardiomegaly",))
    with pytest.raises(ValueError, match="not a sentence of the report grammar"):
        parse("The lungs are clear. Mild degenerative change of the spine.")


def test_findings_are_canonically_ordered():
    a, b = Finding("Pneumothorax", "left"), Finding("Nodule/Mass", "right", "upper", 5)
    assert Findings((a, b)) == Findings((b, a)) and Findings((a, b)).labels == ("Nodule/Mass", "Pneumothorax")


def test_the_article_follows_how_the_size_is_read_and_still_parses():
    from mlcak_lib.ctxr import reports as r
    for mm, article in ((8, "an"), (11, "an"), (18, "an"), (12, "a"), (30, "a"), (5, "a")):
        found = r.with_standard_negatives([r.Finding("Nodule/Mass", "right", "upper", mm)])
        texts = {r.render(found, seed) for seed in range(24)}
        sized = [t.lower() for t in texts if f" {mm} mm" in t and f" of {mm} mm" not in t]
        assert sized and all(f"{article} {mm} mm" in t for t in sized), (mm, sized)
        assert all(r.parse(t) == found for t in texts)
