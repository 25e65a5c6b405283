"""The one registry of the course's training variants and their tuned weights (introduced in notebook 05).

A :class:`Variant` says which terms of the training objective are on and with what weights.
What a variant *does* is data, not a string branched on: its :class:`Family` says whether it
needs a teacher, how its outputs are distilled (``output_kd``: ``None``, ``"mse"`` or
``"hinton"``, looked up in :data:`mlcak_lib.distill.OUTPUT_KD`), whether it can carry the
attention term, and which weights act in it (:meth:`Variant.active_weights`, which enter the
students' cache keys and the runner's CSV).

The weights and the form of the attention term per profile are chosen on the validation split
(``scripts/tune_distill.py --summarize --write``, ``scripts/tune_local.py --write``) and kept in
``data/tuned_weights.json``, outside the Python source, so that retuning does not change the
library's code fingerprint. ``mlcak`` takes the chosen form; ``mlcak-paper`` keeps the paper's
(head-averaged MSE); ``mlcak-constant`` and ``mlcak-oracle`` are its controls (notebook 05).

Every other module, script and notebook reads variant names from here (:data:`VARIANT_NAMES`,
:data:`DISTILL_VARIANTS`, :data:`LOCAL_VARIANTS`); ``tests/test_architecture.py`` fails if one
lists them itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from .config import get_profile

#: The file holding the tuned weights per profile (see its ``_about``).
TUNED_WEIGHTS_FILE = Path(__file__).resolve().parent / "data" / "tuned_weights.json"

#: The weights a variant can take: ``levels`` is the number of attention levels
#: (:func:`mlcak_lib.distill.level_pairs`), ``lambda_local`` the weight of the local task (notebook 06).
WEIGHT_NAMES: tuple[str, ...] = ("alpha", "beta", "gamma", "levels", "temperature", "lambda_local")
#: The form of the attention term (notebook 05; :func:`mlcak_lib.distill.attention_kd_loss`): ``attn_loss``
#: (``"mse"``: the paper's head-averaged MSE, ``"kl"``: per-head KL on each row, ``"cosine"``: normalised
#: maps), ``attn_rows`` (``"full"`` or the class token's row ``"cls"``), ``gamma_mode`` (``"absolute"``, or
#: ``"relative"``: gamma in units of the classification loss at the start). Their defaults are the paper's form.
SETTING_NAMES: tuple[str, ...] = ("attn_loss", "attn_rows", "gamma_mode")
DEFAULT_SETTINGS: dict[str, str] = {"attn_loss": "mse", "attn_rows": "full", "gamma_mode": "absolute"}
#: ``paper_gamma``: the weight of the paper's form (``mlcak-paper``) when ``mlcak`` takes another form.
GAMMA_MODES: tuple[str, ...] = ("absolute", "relative")
#: The attention losses (``attn_loss``, :func:`mlcak_lib.distill.attention_kd_loss`): the paper's head-averaged
#: MSE and two forms from the attention-transfer literature (notebook 05 compares them on the validation split).
ATTENTION_LOSSES: tuple[str, ...] = ("mse", "kl", "cosine")
#: Which query rows of a map take part (``attn_rows``): every row, or the class token's row over the patches
#: (renormalised), the row that decides what the classifier reads.
ATTENTION_ROWS: tuple[str, ...] = ("full", "cls")
#: Where the attention term's targets come from (``attn_target``): the teacher's maps of each image, or one of
#: the two controls of notebook 05 (:meth:`mlcak_lib.distill.TeacherCache.constant` and ``.oracle``).
ATTENTION_TARGETS: tuple[str, ...] = ("teacher", "constant", "oracle")


@dataclass(frozen=True)
class Family:
    """How a group of variants uses the teacher.

    ``output_kd`` names the output-distillation loss (``None``: labels only, no teacher);
    ``attention`` says whether the multilevel attention term can be on (``gamma > 0``);
    ``weights`` lists the weights that act in the family.
    """

    name: str
    output_kd: str | None
    attention: bool
    weights: tuple[str, ...]

    @property
    def uses_teacher(self) -> bool:
        return self.output_kd is not None


#: Labels only (no teacher): the baseline and the multi-task student.
LABELS = Family("labels", None, False, ())
#: The MLCAK family: MSE on MLCT and MCCT logits (alpha, beta) + the multilevel attention term (gamma, levels).
MSE = Family("mse", "mse", True, ("alpha", "beta", "gamma", "levels"))
#: Classic Hinton KD: temperature-scaled KL on both tasks (alpha, beta weight MLCT and MCCT).
HINTON = Family("hinton", "hinton", False, ("alpha", "beta", "temperature"))
FAMILIES: dict[str, Family] = {f.name: f for f in (LABELS, MSE, HINTON)}


def default_weights(profile: str | None = None) -> dict[str, Any]:
    """The tuned weights and attention settings of a profile, read from :data:`TUNED_WEIGHTS_FILE` (on every call).

    Keys: :data:`WEIGHT_NAMES`, :data:`SETTING_NAMES` (the paper's form where the file has none) and
    ``paper_gamma`` (``gamma`` where the file has none).
    """
    profile = get_profile(profile)
    table = json.loads(TUNED_WEIGHTS_FILE.read_text())
    if profile not in table:
        raise ValueError(f"{TUNED_WEIGHTS_FILE.name} has no weights for profile {profile!r}")
    row = table[profile]
    weights: dict[str, Any] = {k: row[k] for k in WEIGHT_NAMES}
    weights["levels"] = int(weights["levels"])
    weights.update({k: str(row.get(k, DEFAULT_SETTINGS[k])) for k in SETTING_NAMES})
    weights["paper_gamma"] = float(row.get("paper_gamma", weights["gamma"]))
    return weights


def write_tuned_weights(profile: str, **weights: Any) -> None:
    """Store chosen weights or attention settings of ``profile`` in :data:`TUNED_WEIGHTS_FILE` (the tuning scripts)."""
    known = (*WEIGHT_NAMES, *SETTING_NAMES, "paper_gamma")
    unknown = set(weights) - set(known)
    if unknown:
        raise ValueError(f"unknown weight(s) {sorted(unknown)}; choose from {list(known)}")
    table = json.loads(TUNED_WEIGHTS_FILE.read_text())
    table.setdefault(profile, {}).update({k: (int(v) if k == "levels" else str(v) if k in SETTING_NAMES else float(v))
                                          for k, v in weights.items()})
    TUNED_WEIGHTS_FILE.write_text(json.dumps(table, indent=2) + "\n")


@dataclass(frozen=True)
class Variant:
    """One training objective: a :class:`Family` and the weights of its terms.

    ``alpha``/``beta`` weight the output distillation of MLCT/MCCT, ``gamma`` the attention term
    over ``levels`` levels, ``temperature`` Hinton KD's temperature, ``lambda_local`` the local task.
    ``attn_loss``, ``attn_rows``, ``gamma_mode`` (:data:`SETTING_NAMES`) give the attention term's form and
    ``attn_target`` its targets: ``"teacher"``, or the controls ``"constant"`` (the dataset-mean teacher
    map) and ``"oracle"`` (the lesion boxes).
    """

    name: str
    family: Family = MSE
    alpha: float = 0.0
    beta: float = 0.0
    gamma: float = 0.0
    levels: int = 2
    temperature: float = 4.0
    lambda_local: float = 0.0
    attn_loss: str = "mse"
    attn_rows: str = "full"
    gamma_mode: str = "absolute"
    attn_target: str = "teacher"
    description: str = ""

    def __post_init__(self) -> None:
        for name, value, allowed in (("attn_loss", self.attn_loss, ATTENTION_LOSSES),
                                     ("attn_rows", self.attn_rows, ATTENTION_ROWS),
                                     ("gamma_mode", self.gamma_mode, GAMMA_MODES),
                                     ("attn_target", self.attn_target, ATTENTION_TARGETS)):
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; choose from {', '.join(allowed)}")
        if self.attn_target == "oracle" and self.attn_rows != "cls":
            raise ValueError("the oracle map defines only the class token's row: use attn_rows='cls'")

    @property
    def uses_teacher(self) -> bool:
        return self.family.uses_teacher

    @property
    def uses_attention(self) -> bool:
        return self.family.attention and self.gamma > 0

    @property
    def uses_local(self) -> bool:
        """Multi-task variant: a local head and ``lambda_local * L_local`` (notebook 06)."""
        return self.lambda_local > 0

    def active_weights(self) -> dict[str, float]:
        """The weights that act in this variant (``levels`` only with the attention term, ``lambda_local``
        only for multi-task variants): what enters the students' cache keys and the runner's CSV."""
        names = [w for w in self.family.weights if w != "levels" or self.uses_attention]
        if self.uses_local:
            names.append("lambda_local")
        return {w: getattr(self, w) for w in names}

    def attention_settings(self) -> dict[str, str]:
        """The attention term's form and target when it is on (else empty): they enter the cache keys and the CSV."""
        if not self.uses_attention:
            return {}
        return {k: getattr(self, k) for k in (*SETTING_NAMES, "attn_target")}

    def with_weights(self, **changes: Any) -> "Variant":
        """A copy with some fields changed (e.g. ``v.with_weights(gamma=0.0)``)."""
        unknown = set(changes) - set(self.__dataclass_fields__)
        if unknown:
            raise ValueError(f"Variant has no field(s) {sorted(unknown)}")
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family.name,
                **{k: getattr(self, k) for k in (*WEIGHT_NAMES, *SETTING_NAMES, "attn_target")}}


def _registry(w: Mapping[str, Any]) -> dict[str, Variant]:
    """Every variant with weights ``w``, in table order (notebook 05's, then notebook 06's)."""
    a, b, g = float(w["alpha"]), float(w["beta"]), float(w["gamma"])
    shared = {"levels": int(w["levels"]), "temperature": float(w["temperature"])}
    form = {k: str(w.get(k, DEFAULT_SETTINGS[k])) for k in SETTING_NAMES}  # the chosen form of the attention term
    paper = {**shared, **DEFAULT_SETTINGS}
    lam = float(w["lambda_local"])
    table = [
        Variant("baseline", LABELS, **shared, description="low-resolution student trained from labels only"),
        Variant("output-kd", MSE, a, b, 0.0, **shared, description="MSE on MLCT and MCCT logits (gamma = 0)"),
        Variant("attention-kd", MSE, 0.0, 0.0, g, **shared, **form,
                description="the attention term alone, in the chosen form (alpha = beta = 0)"),
        Variant("mlcak", MSE, a, b, g, **shared, **form,
                description="MLCAK: logits of both tasks + multilevel attention, in the form chosen on validation"),
        Variant("mlcak-paper", MSE, a, b, float(w.get("paper_gamma", g)), **paper,
                description="MLCAK with the paper's attention term: MSE of head-averaged maps"),
        Variant("mlcak-constant", MSE, a, b, g, **shared, **form, attn_target="constant",
                description="control: MLCAK with the dataset-mean teacher map for every image"),
        Variant("mlcak-oracle", MSE, a, b, g, **shared, **{**form, "attn_rows": "cls"}, attn_target="oracle",
                description="control: MLCAK with the class-token row taken from the lesion boxes (upper bound)"),
        Variant("hinton-kd", HINTON, 1.0, 1.0, 0.0, **shared,
                description="classic temperature-scaled KL on both tasks (reference)"),
        Variant("multitask", LABELS, **shared, lambda_local=lam,
                description="labels only + the local task (lesion map per token; notebook 06)"),
        Variant("mlcak-mt", MSE, a, b, g, **shared, **form, lambda_local=lam,
                description="the complete system: MLCAK distillation + the local task (notebook 06)"),
    ]
    return {v.name: v for v in table}


_PLACEHOLDER = {**dict.fromkeys(WEIGHT_NAMES, 1), **DEFAULT_SETTINGS}
#: Every variant name, in table order.
VARIANT_NAMES: tuple[str, ...] = tuple(_registry(_PLACEHOLDER))
#: The multi-task variants of notebook 06 (they need boxes), in table order.
LOCAL_VARIANTS: tuple[str, ...] = tuple(n for n, v in _registry(_PLACEHOLDER).items() if v.uses_local)
#: The distillation variants of notebook 05 (the runner's default grid), in table order.
DISTILL_VARIANTS: tuple[str, ...] = tuple(n for n in VARIANT_NAMES if n not in LOCAL_VARIANTS)
#: MLCAK against its controls (notebook 05): ``(variant, control)`` pairs the runner reports seed by seed.
CONTROL_PAIRS: tuple[tuple[str, str], ...] = (("mlcak", "mlcak-constant"), ("mlcak-oracle", "mlcak"))
#: The course's headline comparison (notebook 05, the data-regime study): labels-only baseline, then MLCAK.
HEADLINE: tuple[str, str] = ("baseline", "mlcak")


def local_pairs(profile: str | None = None) -> list[tuple[str, str]]:
    """``(multi-task variant, the same variant without the local task)`` for each of :data:`LOCAL_VARIANTS`
    (notebook 06 asks what the local task adds): matched on family and distillation weights."""
    table = variants(profile)
    pairs = []
    for name in LOCAL_VARIANTS:
        v = table[name]
        twin = next(t.name for t in table.values() if not t.uses_local and t.family == v.family
                    and (t.alpha, t.beta, t.gamma) == (v.alpha, v.beta, v.gamma))
        pairs.append((name, twin))
    return pairs


def get_variant(name: str | Variant, profile: str | None = None, **overrides: Any) -> Variant:
    """The :class:`Variant` called ``name`` with the profile's tuned weights.

    ``overrides`` (``alpha``, ``beta``, ``gamma``, ``levels``, ``temperature``, ``lambda_local``, the
    attention settings ``attn_loss``, ``attn_rows``, ``gamma_mode`` and ``paper_gamma``)
    replace the *tuned weights* before the variant takes the ones it uses:
    ``get_variant("output-kd", gamma=300)`` still has ``gamma = 0``, ``get_variant("mlcak", gamma=0)``
    is MLCAK without the attention term. A :class:`Variant` instance gets the overrides directly.
    Raises ``ValueError`` naming the known variants when ``name`` is unknown.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    if isinstance(name, Variant):
        return name.with_weights(**given) if given else name
    weights = default_weights(profile)
    unknown = set(overrides) - set(weights)
    if unknown:
        raise ValueError(f"unknown weight(s) {sorted(unknown)}; choose from {sorted(weights)}")
    weights.update(given)
    key = str(name).strip().lower().replace("_", "-")
    table = _registry(weights)
    if key not in table:
        raise ValueError(f"Unknown variant {name!r}; choose from {', '.join(VARIANT_NAMES)}")
    return table[key]


def variants(profile: str | None = None, **overrides: Any) -> dict[str, Variant]:
    """Every :class:`Variant` of the course with the profile's tuned weights (see :func:`get_variant`)."""
    return {name: get_variant(name, profile, **overrides) for name in VARIANT_NAMES}
