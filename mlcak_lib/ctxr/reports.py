"""Radiology reports from a findings grammar (notebook 08, issue 17: CT understanding from an X-ray expert).

Every simulated study, CT or radiograph, gets a report rendered from its findings. A finding is one of
the simulator's lesion classes (:data:`mlcak_lib.synth.config.LESION_CLASSES`) with a side, a zone or
lobe and a size in millimetres where the class has them (:data:`SPECS`); a report also states the
*negatives* it names (``Findings.negatives``). :func:`render` writes the findings in one of several
phrasings per finding (a seeded choice); :func:`parse` recovers them from any rendered report, so
``parse(render(f, seed)) == f`` for every seed (tested). Normal studies render to a few near-identical
texts: the false-negative problem of contrastive report alignment (:mod:`.losses`).

Documented choices (the paper, Cao et al. CVPR 2024, uses real reports and gives no grammar):

* Each grammar entry is bound to the simulator's *lesion model* (``synth.lesions.MODELS``), not to a
  copied class name, so the grammar follows the simulator if a class is renamed.
* Sides are the **patient's** side, as in radiology reports (the film shows the patient's right on
  the viewer's left). ``bilateral`` is one finding (the simulator draws a bilateral effusion as two
  instances: merge them when converting lesions to findings).
* ``zone`` is ``upper``/``middle``/``lower``: a radiographic zone for nodules, calcifications and
  pleural thickening, a lobe for lung opacity (``middle`` is the right middle lobe or the lingula,
  the simulator's own lobe coding in ``synth.lesions.lung.LOBE_P``). Effusion (basal), pneumothorax
  (apical), fibrosis (basal) and the heart and aorta have no zone.
* Only the small findings (``synth.config.SMALL_CLASSES``: nodule/mass, calcification) carry a size,
  in whole millimetres; a nodule of 30 mm or more is called a mass (radiology convention).
* Findings are kept and rendered in a canonical order (simulator class order, then side, zone, size).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..synth.config import DEFAULT_PREVALENCE, LESION_CLASSES, SMALL_CLASSES
from ..synth.lesions import MODELS
from ..synth.lesions.heart import aortic_enlargement, cardiomegaly
from ..synth.lesions.lung import calcification, lung_opacity, nodule, pulmonary_fibrosis
from ..synth.lesions.pleura import pleural_effusion, pleural_thickening, pneumothorax

SIDES: tuple[str, ...] = ("right", "left", "bilateral")
ZONES: tuple[str, ...] = ("upper", "middle", "lower")

_NAME = {model: name for name, model in MODELS.items()}


@dataclass(frozen=True)
class FindingSpec:
    """What a finding class carries: allowed sides (empty: none), whether it has a zone (``zone``) or a
    lobe (``lobe``) or neither (``None``), its size range in mm (``None``: no size), its phrasings
    (templates with ``{side}``, ``{loc}``, ``{size}``, ``{noun}`` slots) and its noun in a negative."""

    sides: tuple[str, ...]
    region: str | None
    size_mm: tuple[int, int] | None
    phrasings: tuple[str, ...]
    negative: str


_ZONE_PHRASES = ("a {size} {noun} in {loc}", "{noun} of {size} in {loc}",
                 "there is a {size} {noun} projecting over {loc}")
SPECS: dict[str, FindingSpec] = {
    _NAME[nodule]: FindingSpec(("right", "left"), "zone", (3, 45), _ZONE_PHRASES, "suspicious pulmonary nodule"),
    _NAME[calcification]: FindingSpec(("right", "left"), "zone", (2, 16), _ZONE_PHRASES, "calcified granuloma"),
    _NAME[lung_opacity]: FindingSpec(("right", "left"), "lobe", None, (
        "airspace consolidation in {loc}", "opacity in {loc}, likely consolidation",
        "patchy opacity in {loc} compatible with pneumonia"), "focal consolidation"),
    _NAME[pleural_effusion]: FindingSpec(SIDES, None, None, (
        "{side} pleural effusion", "blunting of the {side} costophrenic angle in keeping with effusion",
        "{side} pleural fluid collection"), "pleural effusion"),
    _NAME[cardiomegaly]: FindingSpec((), None, None, (
        "the heart is enlarged", "cardiomegaly", "enlarged cardiac silhouette"), "cardiomegaly"),
    _NAME[pneumothorax]: FindingSpec(("right", "left"), None, None, (
        "{side} apical pneumothorax", "there is a {side} pneumothorax",
        "{side} apical pleural line without lung markings beyond it"), "pneumothorax"),
    _NAME[aortic_enlargement]: FindingSpec((), None, None, (
        "the aorta is enlarged", "prominent aortic knob", "dilated thoracic aorta"), "aortic enlargement"),
    _NAME[pleural_thickening]: FindingSpec(SIDES, "zone", None, (
        "pleural thickening along {loc}", "pleural thickening in {loc}", "chronic-appearing pleural thickening over {loc}"),
        "pleural thickening"),
    _NAME[pulmonary_fibrosis]: FindingSpec(SIDES, None, None, (
        "{side} basal reticular opacities in keeping with fibrosis", "{side} basal pulmonary fibrosis",
        "{side} lower lung reticulation suggesting fibrosis"), "fibrosis"),
}
"""The grammar: one entry per simulator lesion class (tests check the keys are exactly ``LESION_CLASSES``)."""

#: Negatives a report states unless the finding is present (a normal report names all of them).
STANDARD_NEGATIVES: tuple[str, ...] = tuple(_NAME[m] for m in (lung_opacity, pleural_effusion, pneumothorax, cardiomegaly))
MASS_MM = 30  # a nodule of this size or more is called a mass

_NORMAL_OPENERS = ("the lungs are clear.", "lungs are clear.")
_NEGATIVE_OPENERS = ("no {}.", "there is no {}.")


@dataclass(frozen=True, order=True)
class Finding:
    """One finding: ``label`` (a simulator lesion class), ``side`` (patient's side), ``zone`` (zone or lobe)
    and ``size_mm``, each ``None`` where :data:`SPECS` says the class has none. Validated on creation."""

    label: str
    side: str | None = None
    zone: str | None = None
    size_mm: int | None = None

    def __post_init__(self) -> None:
        spec = SPECS.get(self.label)
        if spec is None:
            raise ValueError(f"unknown finding {self.label!r}; classes: {', '.join(LESION_CLASSES)}")
        if (self.side is None) != (not spec.sides) or (self.side is not None and self.side not in spec.sides):
            raise ValueError(f"{self.label}: side {self.side!r} not in {spec.sides or 'none'}")
        zone_ok = self.zone is None if spec.region is None else self.zone in ZONES
        lobar_bilateral = spec.region == "lobe" and self.side == "bilateral"
        if not zone_ok or lobar_bilateral:
            raise ValueError(f"{self.label}: zone {self.zone!r} invalid (region: {spec.region})")
        if spec.size_mm is None and self.size_mm is not None:
            raise ValueError(f"{self.label} has no size")
        if spec.size_mm is not None and (not isinstance(self.size_mm, (int, np.integer))
                                         or not spec.size_mm[0] <= self.size_mm <= spec.size_mm[1]):
            raise ValueError(f"{self.label}: size {self.size_mm!r} mm outside {spec.size_mm}")

    def sort_key(self) -> tuple:
        """Canonical order: simulator class order, then side, zone and size."""
        return (LESION_CLASSES.index(self.label), SIDES.index(self.side) if self.side else -1,
                ZONES.index(self.zone) if self.zone else -1, self.size_mm or 0)


@dataclass(frozen=True)
class Findings:
    """A study's report content: its findings (canonical order) and the classes it states to be absent."""

    findings: tuple[Finding, ...] = ()
    negatives: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "findings", tuple(sorted(self.findings, key=Finding.sort_key)))
        negs = tuple(sorted(set(self.negatives), key=LESION_CLASSES.index))
        object.__setattr__(self, "negatives", negs)
        clash = {f.label for f in self.findings} & set(negs)
        if clash:
            raise ValueError(f"a finding cannot be both present and negated: {sorted(clash)}")

    @property
    def normal(self) -> bool:
        """No finding at all."""
        return not self.findings

    @property
    def labels(self) -> tuple[str, ...]:
        """The classes present (sorted, once each)."""
        return tuple(sorted({f.label for f in self.findings}, key=LESION_CLASSES.index))


def with_standard_negatives(findings: tuple[Finding, ...] | list[Finding]) -> Findings:
    """``Findings`` that negate every standard negative (:data:`STANDARD_NEGATIVES`) not present."""
    present = {f.label for f in findings}
    return Findings(tuple(findings), tuple(n for n in STANDARD_NEGATIVES if n not in present))


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

def _loc(spec: FindingSpec, side: str | None, zone: str | None) -> str:
    if spec.region == "lobe":
        return "the lingula" if (side, zone) == ("left", "middle") else f"the {side} {zone} lobe"
    if side == "bilateral":
        return f"both {zone} zones"
    return f"the {side} {zone} zone"


def _size(mm: int, in_cm: bool) -> str:
    return f"{mm / 10:.1f} cm" if in_cm else f"{mm} mm"


def _noun(label: str, size_mm: int | None) -> str:
    if label == _NAME[calcification]:
        return "calcification"
    return "mass" if (size_mm or 0) >= MASS_MM else "nodule"


def _finding_sentence(f: Finding, rng: np.random.Generator) -> str:
    spec = SPECS[f.label]
    template = spec.phrasings[int(rng.integers(len(spec.phrasings)))]
    size = _size(f.size_mm, bool(rng.integers(2)) and f.size_mm >= 10) if f.size_mm is not None else ""
    sentence = template.format(side=f.side or "", loc=_loc(spec, f.side, f.zone) if spec.region else "",
                               size=size, noun=_noun(f.label, f.size_mm))
    return _AN_RE.sub("an ", sentence) + "."


#: "a" before a size read with a vowel sound (8, 80-89, 8.5, 11, 18, 1.1 is "one point one": "a").
_AN_RE = re.compile(r"\ba (?=8|11(?![\d.])|18(?![\d.]))")


def _join(nouns: list[str]) -> str:
    return nouns[0] if len(nouns) == 1 else ", ".join(nouns[:-1]) + " or " + nouns[-1]


def _capitalise(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def render(findings: Findings, seed: int = 0) -> str:
    """The report of ``findings``: one sentence per finding (seeded phrasing), then the negatives.

    A normal study opens with one of two normal statements and the negatives take one of two openers: the
    standard normal report has four near-identical texts.
    """
    rng = np.random.default_rng(seed)
    sentences = [_finding_sentence(f, rng) for f in findings.findings]
    if findings.normal:
        sentences.insert(0, _NORMAL_OPENERS[int(rng.integers(len(_NORMAL_OPENERS)))])
    if findings.negatives:
        opener = _NEGATIVE_OPENERS[int(rng.integers(len(_NEGATIVE_OPENERS)))]
        sentences.append(opener.format(_join([SPECS[n].negative for n in findings.negatives])))
    return " ".join(_capitalise(s) for s in sentences)


# --------------------------------------------------------------------------------------------
# Parsing: each phrasing becomes a regular expression with named slots
# --------------------------------------------------------------------------------------------

_SIZE_RE = r"(?P<size>\d+ mm|\d+\.\d cm)"
_SIDE_RE = "(?P<side>" + "|".join(SIDES) + ")"


def _loc_table(spec: FindingSpec) -> dict[str, tuple[str, str]]:
    sides = [s for s in spec.sides if not (spec.region == "lobe" and s == "bilateral")]
    return {_loc(spec, s, z): (s, z) for s in sides for z in ZONES}


def _pattern(label: str, template: str) -> re.Pattern:
    spec = SPECS[label]
    locs = "|".join(re.escape(t) for t in sorted(_loc_table(spec), key=len, reverse=True)) if spec.region else ""
    slots = {"{size}": _SIZE_RE, "{side}": _SIDE_RE, "{loc}": f"(?P<loc>{locs})",
             "{noun}": "(?P<noun>calcification)" if label == _NAME[calcification] else "(?P<noun>nodule|mass)"}
    template = template.replace("a {size}", "{article} {size}")
    slots["{article}"] = "an?"
    parts = re.split(r"(\{\w+\})", template)
    return re.compile("".join(slots.get(p, re.escape(p)) for p in parts))


_PATTERNS: list[tuple[str, re.Pattern]] = [(label, _pattern(label, t)) for label, spec in SPECS.items()
                                           for t in spec.phrasings]
_NEG_RE = re.compile("^(?:" + "|".join(re.escape(o.replace("{}.", "")) for o in sorted(_NEGATIVE_OPENERS, key=len, reverse=True)) + ")(?P<list>.+)$")
_NEG_NOUN = {spec.negative: label for label, spec in SPECS.items()}


def _sentences(text: str) -> list[str]:
    return [s.strip().lower() for s in re.split(r"\.(?:\s+|$)", text.strip()) if s.strip()]


def _parse_finding(sentence: str) -> Finding | None:
    hits = []
    for label, pattern in _PATTERNS:
        m = pattern.fullmatch(sentence)
        if m is None:
            continue
        g = m.groupdict()
        side, zone = _loc_table(SPECS[label])[g["loc"]] if g.get("loc") else (g.get("side"), None)
        size = None
        if g.get("size"):
            value, unit = g["size"].split()
            size = int(value) if unit == "mm" else int(round(float(value) * 10))
        hits.append(Finding(label, side, zone, size))
    if len(set(hits)) > 1:
        raise ValueError(f"ambiguous sentence {sentence!r}: {sorted(set(hits), key=Finding.sort_key)}")
    return hits[0] if hits else None


def _parse_negatives(sentence: str) -> tuple[str, ...] | None:
    m = _NEG_RE.match(sentence)
    if m is None:
        return None
    nouns = re.split(r", | or ", m.group("list"))
    if not all(n in _NEG_NOUN for n in nouns):
        return None
    return tuple(_NEG_NOUN[n] for n in nouns)


def parse(text: str) -> Findings:
    """The findings of a rendered report (inverse of :func:`render`); raises ``ValueError`` on a sentence
    the grammar does not produce."""
    findings: list[Finding] = []
    negatives: tuple[str, ...] = ()
    for sentence in _sentences(text):
        if sentence + "." in _NORMAL_OPENERS:
            continue
        negs = _parse_negatives(sentence)
        if negs is not None:
            negatives += negs
            continue
        finding = _parse_finding(sentence)
        if finding is None:
            raise ValueError(f"not a sentence of the report grammar: {sentence!r}")
        findings.append(finding)
    return Findings(tuple(findings), negatives)


# --------------------------------------------------------------------------------------------
# Random studies (for the pools of notebook 08 and for tests)
# --------------------------------------------------------------------------------------------

def random_finding(label: str, rng: np.random.Generator) -> Finding:
    """One finding of class ``label`` with uniformly drawn side, zone and size (within :data:`SPECS`)."""
    spec = SPECS[label]
    sides = [s for s in spec.sides if not (spec.region == "lobe" and s == "bilateral")]
    side = sides[int(rng.integers(len(sides)))] if sides else None
    zone = ZONES[int(rng.integers(3))] if spec.region else None
    size = int(rng.integers(spec.size_mm[0], spec.size_mm[1] + 1)) if spec.size_mm else None
    return Finding(label, side, zone, size)


def random_findings(rng: np.random.Generator, prevalence: dict[str, float] | None = None) -> Findings:
    """A study's findings: each class present with its prevalence (default: the simulator's
    ``DEFAULT_PREVALENCE``, about half the studies normal), small findings once or twice, and the
    standard negatives of the classes absent."""
    prevalence = DEFAULT_PREVALENCE if prevalence is None else prevalence
    found: list[Finding] = []
    for label in LESION_CLASSES:
        if rng.random() < prevalence.get(label, 0.0):
            count = 1 + int(label in SMALL_CLASSES and rng.random() < 0.3)
            found.extend(random_finding(label, rng) for _ in range(count))
    return with_standard_negatives(found)
