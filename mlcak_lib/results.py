"""Evaluation rows, the grid summary, tables and figures (notebooks 05 and 06; written by the runner).

* :func:`flat_metrics` -- one trained model on one split as flat columns: headline AUROCs,
  per-class AUROC, MLCT macro AUROC per lesion-size bin and the localization metrics.
* Localization columns are named ``loc_<map>_<metric>[<stratum>]``; this module is the one place
  that knows the scheme (:func:`loc_column`, :data:`LOC_MAPS`, :data:`LOC_METRICS`).
* :func:`summarize_grid` -- a runner CSV as mean ± std per variant × student × resolution with the **gap
  recovered**, shown only when the teacher-baseline gap exceeds 2 seed SDs of the baseline (:func:`gap_reason`,
  :func:`gap_text`); :func:`markdown_table`, :func:`localization_summary`, :func:`plot_grid` present it.
* :func:`paired_table` -- every variant against a reference seed by seed, with 95 % t intervals
  (:mod:`mlcak_lib.stats`); :func:`paired_markdown` presents it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from torch import nn

from .local_task import has_boxes
from .localization import model_localization
from .metrics import SIZE_BINS, evaluate
from .splits import InMemorySplit
from .stats import paired_ci
from .variants import VARIANT_NAMES

#: Headline metrics, in table order: column name -> label.
METRICS: dict[str, str] = {"mcct_auroc": "MCCT AUROC", "mlct_macro_auroc": "MLCT macro AUROC"}
#: Localization maps in the CSV: column prefix -> (``model_localization`` map name, label).
LOC_MAPS: dict[str, tuple[str, str]] = {"rollout": ("attention:rollout", "attention rollout"),
                                        "local": ("local-head", "local head")}
LOC_METRICS: tuple[str, ...] = ("token_auroc", "pointing", "iou", "mass_in_box")
LOC_STRATA: tuple[str, ...] = ("all", *(label for label, _, _ in SIZE_BINS))


def loc_column(map_prefix: str, metric: str, stratum: str = "all") -> str:
    """The CSV column of a localization metric: ``loc_<map>_<metric>[<stratum>]`` (e.g. ``loc_rollout_pointing[all]``)."""
    if map_prefix not in LOC_MAPS or metric not in LOC_METRICS or stratum not in LOC_STRATA:
        raise ValueError(f"no localization column for map {map_prefix!r}, metric {metric!r}, stratum {stratum!r}; "
                         f"maps {list(LOC_MAPS)}, metrics {list(LOC_METRICS)}, strata {list(LOC_STRATA)}")
    return f"loc_{map_prefix}_{metric}[{stratum}]"


def flat_localization(model: nn.Module, split: InMemorySplit, resolution: int) -> dict[str, float]:
    """Localization metrics (any-lesion channel) as flat :func:`loc_column` columns.

    Maps: ``rollout`` (class-token attention rollout, every model) and ``local`` (the local head,
    multi-task students only); metrics of :func:`mlcak_lib.localization.localization_report`;
    strata ``all`` and the lesion-size bins. Empty when the split has no boxes.
    """
    if not has_boxes(split):
        return {}
    df = model_localization(model, split, resolution, attention=("rollout",))
    df = df[df["channel"] == "any"]
    row: dict[str, float] = {}
    for prefix, (name, _) in LOC_MAPS.items():
        for _, r in df[df["map"] == name].iterrows():
            row[loc_column(prefix, r["metric"], r["stratum"])] = float(r["value"])
    return row


def flat_metrics(model: nn.Module, split: InMemorySplit, resolution: int) -> dict[str, Any]:
    """Test metrics as flat columns: headline AUROCs, per-class AUROC, macro AUROC per size bin,
    and the localization metrics (:func:`flat_localization`)."""
    res = evaluate(model, split, resolution)
    row: dict[str, Any] = {"mcct_auroc": res["mcct_auroc"], "mlct_macro_auroc": res["mlct_macro_auroc"], "score": res["score"]}
    for name, value in res["mlct_auroc"].items():
        row[f"auroc[{name}]"] = value
    by_size = res.get("by_size")
    for label, _, _ in SIZE_BINS:
        values = by_size.loc[by_size["size_bin"] == label, "auroc"] if by_size is not None and len(by_size) else []
        values = np.asarray(values, dtype=float)
        values = values[~np.isnan(values)]
        row[f"auroc_size[{label}]"] = float(values.mean()) if len(values) else float("nan")
    row.update(flat_localization(model, split, resolution))
    return row


# --------------------------------------------------------------------------------------------
# The grid summary
# --------------------------------------------------------------------------------------------

#: The gap recovered is shown only when the teacher-baseline gap exceeds this many seed standard deviations of
#: the baseline (:func:`gap_reason`).
GAP_MIN_SPREADS: float = 2.0


def gap_reason(baseline: float, teacher: float, baseline_std: float, n_seeds: int) -> str:
    """Why the gap recovered of a baseline (mean over ``n_seeds`` seeds, seed std ``baseline_std``) against
    ``teacher`` must not be reported; ``""`` when it may be.

    The rule (issue 15): report it only when the teacher-baseline gap is **more than** :data:`GAP_MIN_SPREADS`
    (2) **times the baseline's seed standard deviation** (sample std over at least two seeds). The ratio's
    denominator is a difference between a fixed teacher and a baseline that moves with the seed: within two
    seed SDs, an ordinary seed of the baseline comes close to the teacher, the denominator can be near zero,
    and the ratio swings by hundreds of percent (a 0.01 gap gave -191 % and +79 %). Beyond it, the
    uncertainty of the baseline's mean (SD/sqrt(n)) is at most a third of the gap (n >= 2; a fifth for n = 5).
    With one seed the spread is unknown, so the gap is not reported either.
    """
    if not (np.isfinite(baseline) and np.isfinite(teacher)):
        return "no baseline of this student at this resolution" if np.isfinite(teacher) else "no teacher score"
    gap = teacher - baseline
    if gap <= 0:
        return f"the teacher ({teacher:.3f}) is not above the baseline ({baseline:.3f})"
    if n_seeds < 2 or not np.isfinite(baseline_std):
        return f"teacher−baseline gap {gap:.3f}, but the baseline has one seed: its seed spread is unknown"
    if gap <= GAP_MIN_SPREADS * baseline_std:
        return (f"teacher−baseline gap {gap:.3f} is within {GAP_MIN_SPREADS:g} × the baseline's seed spread "
                f"(std {baseline_std:.3f} over {n_seeds} seeds)")
    return ""


def gap_recovered(student: float, baseline: float, teacher: float, baseline_std: float | None = None,
                  n_seeds: int | None = None) -> float:
    """``(student - baseline) / (teacher - baseline)`` on means over seeds; NaN when the teacher is not above the
    baseline, and, with the baseline's seed std and seed count given, NaN unless :func:`gap_reason` allows it
    (the gap must exceed 2 seed SDs of the baseline). Report it with that rule: :func:`summarize_grid` does."""
    denom = teacher - baseline
    if not np.isfinite(denom) or denom <= 0:
        return float("nan")
    if baseline_std is not None and gap_reason(baseline, teacher, baseline_std, n_seeds or 0):
        return float("nan")
    return (student - baseline) / denom


def gap_text(row: Any, metric: str) -> str:
    """A :func:`summarize_grid` row's gap recovered for ``metric`` as text: ``"19 %"``, or ``"not shown (<reason>)"``
    when the rule of :func:`gap_reason` withholds it (notebooks print this instead of formatting the number)."""
    value, note = row[f"gap_{metric}"], row.get(f"gap_{metric}_note", "")
    if np.isfinite(value):
        return f"{100 * value:.0f} %"
    return f"not shown ({note})" if isinstance(note, str) and note else "not shown"


#: The student architecture of a runner row when the CSV has no ``student`` column (grids before issue 14).
STANDARD_STUDENT = "standard"


def model_label(variant: str, student: str = STANDARD_STUDENT) -> str:
    """How tables and figures name a model: the variant, with a non-standard student architecture in brackets."""
    return variant if student in (STANDARD_STUDENT, "teacher", "") else f"{variant} ({student})"


def summarize_grid(csv: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """Per (variant, student, resolution): seeds, mean and std of every AUROC and localization column, the gap recovered.

    ``csv``: a path to a runner CSV or its DataFrame. Columns: ``variant``, ``student`` (the student
    architecture, :data:`STANDARD_STUDENT` where the CSV has none), ``model`` (:func:`model_label`),
    ``resolution``, ``n_seeds``, ``<metric>_mean`` / ``<metric>_std`` for every ``*auroc*`` and ``loc_*``
    column, and ``gap_<metric>`` for the two headline metrics (means of the student and of the baseline
    of the same architecture at the same resolution, teacher from the teacher row). The teacher is the
    row with variant ``teacher`` (std 0, gap 1 by definition: NaN is written instead to avoid a
    misleading 100 %). ``gap_<metric>`` is NaN unless the teacher-baseline gap exceeds 2 seed SDs of that
    baseline (:func:`gap_reason`); ``gap_<metric>_note`` then says why (``""`` where the gap is shown).
    """
    df = pd.read_csv(csv) if not isinstance(csv, pd.DataFrame) else csv.copy()
    if "student" not in df.columns:
        df["student"] = STANDARD_STUDENT
    df["student"] = df["student"].fillna("teacher")
    cols = [c for c in df.columns if ("auroc" in c or c.startswith("loc_")) and not c.startswith("teacher_")]
    g = df.groupby(["variant", "student", "resolution"], sort=False)
    table = g[cols].agg(["mean", "std"])
    table.columns = [f"{c}_{stat}" for c, stat in table.columns]
    table.insert(0, "n_seeds", g["seed"].nunique())
    table = table.reset_index()
    table.insert(2, "model", [model_label(v, s) for v, s in zip(table["variant"], table["student"])])
    teacher = df[df["variant"] == "teacher"]
    for metric in METRICS:
        t = float(teacher[metric].mean()) if len(teacher) else float("nan")
        base = table[table["variant"] == "baseline"].set_index(["student", "resolution"])
        gaps, notes = [], []
        for _, row in table.iterrows():
            key = (row["student"], row["resolution"])
            b = base.loc[key] if key in base.index else None
            b_mean, b_std, b_n = ((float(b[f"{metric}_mean"]), float(b[f"{metric}_std"]), int(b["n_seeds"]))
                                  if b is not None else (np.nan, np.nan, 0))
            note = gap_reason(b_mean, t, b_std, b_n) if row["variant"] != "teacher" else ""
            notes.append(note)
            gaps.append(gap_recovered(row[f"{metric}_mean"], b_mean, t) if row["variant"] != "teacher" and not note
                        else float("nan"))
        table[f"gap_{metric}"], table[f"gap_{metric}_note"] = gaps, notes
    order = {v: i for i, v in enumerate(["teacher", *VARIANT_NAMES])}
    table["_o"] = table["variant"].map(lambda v: order.get(v, len(order)))
    table["_s"] = ~table["student"].isin([STANDARD_STUDENT, "teacher"])
    table = (table.sort_values(["_s", "_o", "resolution"], ascending=[True, True, False])
             .drop(columns=["_o", "_s"]).reset_index(drop=True))
    return table


def paired_table(csv: str | os.PathLike | pd.DataFrame, reference: str = "baseline",
                 metrics: Sequence[str] = tuple(METRICS), by: Sequence[str] = ()) -> pd.DataFrame:
    """Every variant against ``reference`` seed by seed (same student architecture and resolution), per metric.

    Columns: ``model``, ``variant``, ``student``, ``resolution``, ``reference``, ``metric``, ``n`` (common
    seeds), ``diff`` (mean of variant minus reference), ``ci_low``/``ci_high`` (95 % t interval,
    :func:`mlcak_lib.stats.paired_ci`) and ``wins`` (seeds on which the variant is higher). Pairs with fewer
    than two common seeds are left out. ``by``: further columns that pair only within their groups (the data-regime
    study pairs within ``n_train``, notebook 05); they are kept in the output before ``reference``.
    """
    df = pd.read_csv(csv) if not isinstance(csv, pd.DataFrame) else csv.copy()
    if "student" not in df.columns:
        df["student"] = STANDARD_STUDENT
    df = df[df["variant"] != "teacher"]
    rows = []
    keys = ["student", "resolution", *by]
    for (student, r, *extra), group in df.groupby(keys, sort=False):
        ref = group[group["variant"] == reference].set_index("seed")
        for variant, sub in group[group["variant"] != reference].groupby("variant", sort=False):
            sub = sub.set_index("seed")
            seeds = sub.index.intersection(ref.index)
            if len(seeds) < 2:
                continue
            for metric in metrics:
                ci = paired_ci(sub.loc[seeds, metric].to_numpy(), ref.loc[seeds, metric].to_numpy())
                rows.append({"model": model_label(variant, student), "variant": variant, "student": student,
                             "resolution": r, **dict(zip(by, extra)), "reference": reference, "metric": metric,
                             "n": ci.n, "diff": ci.mean, "ci_low": ci.low, "ci_high": ci.high, "wins": ci.wins})
    return pd.DataFrame(rows, columns=["model", "variant", "student", "resolution", *by, "reference", "metric", "n",
                                       "diff", "ci_low", "ci_high", "wins"])


def tuning_summary(tuning: pd.DataFrame, reference: str = "output-kd", score: str = "val_score") -> pd.DataFrame:
    """A validation search (``scripts/tune_distill.py``) per candidate: seeds, mean and std of ``score``, and the
    seed-paired difference against the ``reference`` candidate with its 95 % t interval and wins.

    ``tuning``: one row per run with ``label``, ``stage``, ``seed`` and ``score``. Candidates keep their order.
    """
    ref = tuning[tuning["label"] == reference].set_index("seed")[score]
    rows = []
    for label, g in tuning.groupby("label", sort=False):
        d = g.set_index("seed")[score]
        common = d.index.intersection(ref.index)
        ci = paired_ci(d.loc[common].to_numpy(), ref.loc[common].to_numpy()) if len(common) >= 2 and label != reference else None
        rows.append({"label": label, "stage": g["stage"].iloc[0], "seeds": len(g), score: d.mean(),
                     "std": d.std(ddof=1) if len(d) > 1 else float("nan"),
                     f"vs {reference}": ci.mean if ci else float("nan"), "ci_low": ci.low if ci else float("nan"),
                     "ci_high": ci.high if ci else float("nan"), "wins": f"{ci.wins}/{ci.n}" if ci else "",
                     "best_epoch": g["best_epoch"].median() if "best_epoch" in g else float("nan")})
    return pd.DataFrame(rows)


def ci_text(low: float, high: float) -> str:
    """A 95 % interval as the course writes it: ``[low, high]``, signed, three decimals (notebook 05)."""
    return f"[{low:+.3f}, {high:+.3f}]"


def with_ci(table: pd.DataFrame, column: str = "95 % CI") -> pd.DataFrame:
    """``table`` (with ``ci_low`` and ``ci_high``, as :func:`paired_table` gives) plus its intervals as text
    (:func:`ci_text`) in ``column``, for display."""
    return table.assign(**{column: [ci_text(lo, hi) for lo, hi in zip(table["ci_low"], table["ci_high"])]})


def paired_markdown(table: pd.DataFrame, title: str | None = None) -> str:
    """:func:`paired_table` as markdown: one row per model and resolution, one column per metric."""
    lines = [f"## {title}", ""] if title else []
    metrics = list(dict.fromkeys(table["metric"]))
    lines += ["| model | px | vs | seeds | " + " | ".join(f"Δ {METRICS.get(m, m)} [95 % CI] (wins)" for m in metrics) + " |",
              "|---|---:|---|---:|" + "---|" * len(metrics)]
    for (model, r, ref), g in table.groupby(["model", "resolution", "reference"], sort=False):
        cells = []
        for m in metrics:
            row = g[g["metric"] == m].iloc[0]
            mark = " **above 0**" if row["ci_low"] > 0 else ""
            cells.append(f"{row['diff']:+.3f} {ci_text(row['ci_low'], row['ci_high'])} ({row['wins']}/{row['n']}){mark}")
        lines.append(f"| {model} | {r} | {ref} | {g['n'].iloc[0]} | " + " | ".join(cells) + " |")
    lines += ["", "Seed-paired differences (variant − reference, same seeds), 95 % confidence intervals from the "
              "t distribution with n − 1 degrees of freedom; test split (unseen patients).", ""]
    return "\n".join(lines)


def pm_text(mean: float, std: float) -> str:
    """``mean ± std`` with three decimals (``mean`` alone without a std, ``n/a`` without a mean): table cells."""
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}" if np.isfinite(std) else f"{mean:.3f}"


def localization_summary(table: pd.DataFrame, stratum: str = "all") -> pd.DataFrame:
    """Localization metrics (any lesion) per model and map, ``mean ± std`` over seeds, from :func:`summarize_grid`."""
    rows = []
    for _, r in table.iterrows():
        for prefix, (_, label) in LOC_MAPS.items():
            cols = [loc_column(prefix, m, stratum) for m in LOC_METRICS]
            if not np.isfinite(r.get(f"{cols[0]}_mean", np.nan)):
                continue
            rows.append({"model": r.get("model", r["variant"]), "px": r["resolution"], "map": label,
                         **{m: pm_text(r[f"{c}_mean"], r[f"{c}_std"]) for m, c in zip(LOC_METRICS, cols)}})
    return pd.DataFrame(rows, columns=["model", "px", "map", *LOC_METRICS])


def markdown_table(table: pd.DataFrame, title: str | None = None) -> str:
    """The summary as markdown: mean ± std per variant x resolution, the gap recovered and localization."""
    lines = [f"# {title}", ""] if title else []
    lines += ["| variant | px | seeds | MCCT AUROC | gap MCCT | MLCT macro AUROC | gap MLCT | < 10 mm | 10-20 mm | >= 20 mm |",
              "|---|---:|---:|---|---:|---|---:|---|---|---|"]

    def pct(x: float) -> str:
        return f"{100 * x:.0f} %" if np.isfinite(x) else "–"

    for _, row in table.iterrows():
        size = [pm_text(row.get(f"auroc_size[{b}]_mean", np.nan), row.get(f"auroc_size[{b}]_std", np.nan))
                for b, _, _ in SIZE_BINS]
        lines.append(f"| {row.get('model', row['variant'])} | {row['resolution']} | {row['n_seeds']} | "
                     f"{pm_text(row['mcct_auroc_mean'], row['mcct_auroc_std'])} | {pct(row['gap_mcct_auroc'])} | "
                     f"{pm_text(row['mlct_macro_auroc_mean'], row['mlct_macro_auroc_std'])} | {pct(row['gap_mlct_macro_auroc'])} | "
                     + " | ".join(size) + " |")
    lines += ["", "Gap recovered = (AUROC_student − AUROC_baseline) / (AUROC_teacher − AUROC_baseline), "
              "on means over seeds at the same resolution, shown only when the teacher–baseline gap is more than "
              f"{GAP_MIN_SPREADS:g} × the baseline's seed std (else –). Size columns: MLCT macro AUROC per "
              "lesion-size bin.", ""]
    lines += _gap_footnotes(table)
    size_cols = [f"auroc_size[{b}]_mean" for b, _, _ in SIZE_BINS]
    if len(table) and not np.isfinite(table.reindex(columns=size_cols).to_numpy(dtype=float)).any():
        lines += ["Size columns n/a: no lesion has a size in mm (data without boxes, or PNG/JPEG files without a "
                  "pixel spacing: set MLCAK_PIXEL_SPACING_MM or a pixel_spacing_mm column, docs/own_data.md).", ""]
    shown = [("rollout", "pointing"), ("rollout", "mass_in_box"), ("local", "token_auroc"), ("local", "pointing")]
    if any(f"{loc_column(m, k)}_mean" in table.columns for m, k in shown):
        lines += ["## Localization (any lesion, test split)", "",
                  "| variant | px | attention: pointing | attention: mass in boxes | local head: token AUROC | local head: pointing |",
                  "|---|---:|---|---|---|---|"]
        for _, row in table.iterrows():
            cells = [pm_text(row.get(f"{loc_column(m, k)}_mean", np.nan), row.get(f"{loc_column(m, k)}_std", np.nan))
                     for m, k in shown]
            lines.append(f"| {row.get('model', row['variant'])} | {row['resolution']} | " + " | ".join(cells) + " |")
        lines += ["", "Attention: class-token attention rollout on the 7×7 token grid; local head: the any-lesion map "
                  "of the multi-task students. Pointing game with a one-token tolerance (notebook 06).", ""]
    return "\n".join(lines)


def _gap_footnotes(table: pd.DataFrame) -> list[str]:
    """One line per student architecture x resolution x metric whose gap recovered is not shown, with the reason."""
    seen: dict[str, None] = {}
    for _, row in table[table["variant"] != "teacher"].iterrows():
        for metric, label in METRICS.items():
            note = row.get(f"gap_{metric}_note", "")
            if isinstance(note, str) and note:
                who = "" if row["student"] in (STANDARD_STUDENT, "teacher") else f", {row['student']} student"
                seen[f"- gap {label.split()[0]} not shown at {row['resolution']} px{who}: {note}."] = None
    return [*seen, ""] if seen else []


def plot_grid(table: pd.DataFrame, path: str | os.PathLike | None = None, title: str | None = None):
    """AUROC vs resolution per variant (mean ± std error bars), teacher as a dashed line; returns the figure."""
    fig, axes = plt.subplots(1, 2, figsize=(8.8, 3.8), sharex=True, layout="tight")
    teacher = table[table["variant"] == "teacher"]
    students = table[table["variant"] != "teacher"]
    resolutions = sorted(students["resolution"].unique())
    key = "model" if "model" in students.columns else "variant"
    names = list(dict.fromkeys(students[key]))
    for ax, (metric, label) in zip(axes, METRICS.items()):
        for k, v in enumerate(names):
            sub = students[students[key] == v].sort_values("resolution")
            offset = (k - (len(names) - 1) / 2) * 0.04
            x = np.log2(np.asarray(sub["resolution"], dtype=float)) + offset  # log2 axis drawn linearly: NaN-safe
            ax.errorbar(x, sub[f"{metric}_mean"], yerr=sub[f"{metric}_std"].fillna(0), marker="o", capsize=3, label=v)
        if len(teacher) and np.isfinite(float(teacher[f"{metric}_mean"].iloc[0])):
            ax.axhline(float(teacher[f"{metric}_mean"].iloc[0]), color="k", ls="--", lw=1, label="teacher (224 px)")
        ax.set_xticks(np.log2(np.asarray(resolutions, dtype=float)))
        ax.set_xticklabels([str(r) for r in resolutions])
        ax.set_xlabel("student input resolution (px)")
        ax.set_ylabel(f"test {label}")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()  # one legend under both panels: it never covers a point
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.1 if len(labels) <= 5 else 0.16, 1, 1))
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def plot_curves(curves: pd.DataFrame, variants: Sequence[str], resolution: int, student: str = STANDARD_STUDENT,
                metric: str = "val_score", path: str | os.PathLike | None = None):
    """Learning curves of a runner's ``curves_<tag>.csv``: ``metric`` per epoch, one thin line per seed, one
    colour per variant, a dot on the epoch each run kept (early stopping); returns the figure."""
    fig, ax = plt.subplots(figsize=(7, 3.6), layout="tight")
    df = curves[(curves["resolution"] == resolution) & (curves.get("student", STANDARD_STUDENT) == student)]
    for k, v in enumerate(variants):
        color = f"C{k}"
        for j, (_, run) in enumerate(df[df["variant"] == v].groupby("seed")):
            ax.plot(run["epoch"], run[metric], color=color, lw=0.9, alpha=0.7, label=v if j == 0 else None)
            best = run[run["best"].astype(bool)]
            ax.plot(best["epoch"], best[metric], "o", color=color, ms=4)
    ax.set(xlabel="epoch", ylabel=metric.replace("_", " "),
           title=f"Learning curves at {resolution} px (dots: the epoch kept by early stopping)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def plot_cost_accuracy(table: pd.DataFrame, cost: pd.DataFrame, metric: str = "mcct_auroc",
                       path: str | os.PathLike | None = None):
    """Test ``metric`` (mean ± std over seeds, :func:`summarize_grid`) against analytic MFLOPs per image
    (the runner's ``cost_<tag>.csv``), log x axis; one marker per model; returns the figure."""
    flops = {(row["student"], int(row["resolution"])): row["mflops"] for _, row in cost.iterrows()}
    fig, ax = plt.subplots(figsize=(7, 4), layout="tight")
    markers = dict.fromkeys(table["variant"])
    for k, v in enumerate(markers):
        sub = table[table["variant"] == v]
        x = [flops.get((s if v != "teacher" else "teacher", int(r)), np.nan) for s, r in zip(sub["student"], sub["resolution"])]
        ax.errorbar(x, sub[f"{metric}_mean"], yerr=sub[f"{metric}_std"].fillna(0), fmt="*" if v == "teacher" else "o",
                    ms=10 if v == "teacher" else 5, capsize=3, color="k" if v == "teacher" else f"C{k}", label=v)
        for xi, (_, row) in zip(x, sub.iterrows()):
            if row["student"] not in (STANDARD_STUDENT, "teacher"):
                ax.annotate(row["student"], (xi, row[f"{metric}_mean"]), fontsize=7, xytext=(4, -8),
                            textcoords="offset points")
    ax.set_xscale("log")
    ax.set(xlabel="MFLOPs per image (analytic count)", ylabel=f"test {METRICS.get(metric, metric)}",
           title="Accuracy against cost")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig
