"""The pipeline's summary: a corpus x model table over the splits that ran, as JSON and Markdown.

Rows, each scored only by models that never heard its speakers:
- ``<corpus>``: the corpus's test speakers of the k folds (every clip tested once, pooled),
- ``<corpus> left out``: the whole corpus, by models trained on the other corpora (leave one out),
- ``<name> never trained on``: a cross corpus, by every split's models (mean ± sd over splits).
The mean over the held-out corpora (the last two kinds) is what recipes are chosen by.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from export.cards import model_card
from service.bundle import load_bundle, write_bundle
from training.metrics import classification_report

MODELS = ("teacher", "teacher-int8", "student_alone", "student", "student-int8", "auto")
NAMES = {"student_alone": "student alone", "student": "distilled student"}


def pooled(reports: list[dict]) -> dict:
    """Metrics of the summed confusion matrix: with k-fold every clip is tested exactly once."""
    cm = np.sum([np.asarray(r["confusion"]) for r in reports], axis=0)
    labels = reports[0]["labels"]
    y_true = np.repeat(np.arange(len(labels)), cm.sum(axis=1))
    y_pred = np.concatenate([np.repeat(np.arange(len(labels)), row) for row in cm])
    return classification_report(y_true, y_pred, labels)


def _row(reports: dict[str, list[dict]], spread: bool) -> dict:
    """{model: UA, macro-F1 (pooled, or mean ± sd over splits when `spread`), confusion}."""
    out = {}
    for model, reps in reports.items():
        p = pooled(reps)
        uas = [r["ua"] for r in reps]
        out[model] = {"ua": float(np.mean(uas)) if spread else p["ua"], "ua_std": float(np.std(uas)),
                      "macro_f1": float(np.mean([r["macro_f1"] for r in reps])) if spread else p["macro_f1"],
                      "per_split": uas, "confusion": p["confusion"], "labels": p["labels"], "n": p["n"]}
        if "teacher_share" in reps[0]:
            out[model]["teacher_share"] = float(np.mean([r["teacher_share"] for r in reps]))
    return out


def corpus_table(splits: list[dict]) -> dict[str, dict]:
    """{row name: {model: scores}} (see the module docstring); a "kind" key says which row it is."""
    folds = [s for s in splits if s["fold"].startswith("fold")]
    loco = [s for s in splits if s["fold"].startswith("loco-")]
    rows: dict[str, dict] = {}
    for prefix, kind in (("test-", "k-fold"), ("cross-", "never trained on")):
        names = sorted({n for s in (folds if prefix == "test-" else splits) for n in s["sets"] if n.startswith(prefix)})
        for name in names:
            group = [s["sets"][name] for s in (folds if prefix == "test-" else splits) if name in s["sets"]]
            rows[name[len(prefix):] if prefix == "test-" else f"{name[len(prefix):]} never trained on"] = {
                "kind": kind, **_row({m: [g[m] for g in group] for m in MODELS if all(m in g for g in group)}, kind != "k-fold")}
    for s in loco:
        corpus = s["fold"][len("loco-"):]
        rep = s["sets"][f"test-{corpus}"]
        rows[f"{corpus} left out"] = {"kind": "left out", **_row({m: [rep[m]] for m in MODELS if m in rep}, False)}
    return rows


def heldout_mean(rows: dict[str, dict]) -> dict[str, float]:
    """Per model, the mean UA over the held-out corpora (left out, never trained on)."""
    held = [r for r in rows.values() if r["kind"] != "k-fold"]
    models = [m for m in MODELS if held and all(m in r for r in held)]
    return {m: float(np.mean([r[m]["ua"] for r in held])) for m in models}


def degraded_table(splits: list[dict]) -> dict[str, dict]:
    """{condition-corpus: {model: pooled UA}} over the k folds."""
    folds = [s for s in splits if s["fold"].startswith("fold")]
    names = sorted({n for s in folds for n in s["sets"] if n.startswith("degraded-")})
    return {n[len("degraded-"):]: {m: pooled([s["sets"][n][m] for s in folds])["ua"]
                                   for m in MODELS if m in folds[0]["sets"][n]} for n in names}


def write_summary(out: Path, splits: list[dict], k: int, fallback: dict | None = None) -> dict:
    """summary.json and report.md over the splits that ran; `fallback`: pipeline.fallback.choose's."""
    rows = corpus_table(splits)
    summary = {"k": k, "splits": [s["fold"] for s in splits], "corpora": rows,
               "heldout_mean": heldout_mean(rows), "degraded": degraded_table(splits), "fallback": fallback}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "report.md").write_text(markdown(summary))
    return summary


def markdown(s: dict) -> str:
    rows = s["corpora"]
    models = [m for m in MODELS if all(m in r for r in rows.values())]
    head = "| set | " + " | ".join(NAMES.get(m, m) for m in models) + " |"
    lines = ["# Pipeline report", "", f"Splits: {', '.join(s['splits'])} (k = {s['k']}). UA / macro-F1; every "
             "score from models that never heard the speakers. `auto`: the student, or the fallback below the "
             "service's default threshold (share of clips in brackets).", "", head, "|---" * (len(models) + 1) + "|"]
    for name, r in rows.items():
        cells = [f"{r[m]['ua']:.3f}" + (f" ± {r[m]['ua_std']:.3f}" if r["kind"] == "never trained on" else "")
                 + f" / {r[m]['macro_f1']:.3f}" + (f" ({r[m]['teacher_share']:.0%})" if "teacher_share" in r[m] else "")
                 for m in models]
        lines.append(f"| {name} ({r['kind']}) | " if r["kind"] == "k-fold" else f"| {name} | ")
        lines[-1] += " | ".join(cells) + " |"
    if s["heldout_mean"]:
        lines.append("| **mean over held-out corpora** | " + " | ".join(
            f"**{s['heldout_mean'][m]:.3f}**" if m in s["heldout_mean"] else "" for m in models) + " |")
    if s["degraded"]:
        dmodels = [m for m in models if all(m in r for r in s["degraded"].values())]
        lines += ["", "## Degraded audio (test speakers of the k folds, pooled UA)", "",
                  "| condition-corpus | " + " | ".join(NAMES.get(m, m) for m in dmodels) + " |",
                  "|---" * (len(dmodels) + 1) + "|"]
        lines += [f"| {n} | " + " | ".join(f"{r[m]:.3f}" for m in dmodels) + " |" for n, r in s["degraded"].items()]
    if s.get("fallback"):
        lines += fallback_markdown(s["fallback"])
    lines += ["", "## Confusion matrices (rows: true class, columns: predicted; "
              + ", ".join(next(iter(rows.values()))["teacher"]["labels"]) + ")", ""]
    for name, r in rows.items():
        for m in [m for m in ("teacher", "student") if m in r]:
            lines.append(f"- {name}, {NAMES.get(m, m)}: `{r[m]['confusion']}`")
    return "\n".join(lines) + "\n"


def fallback_markdown(f: dict) -> list[str]:
    names = [k for k in f["chosen"] if k not in ("threshold", "mean", "share") and not k.endswith(" share")]
    best = f["chosen"]
    lines = ["", "## `model=auto`: the fallback threshold", "",
             f"Chosen on the k folds' students and teachers (pipeline.fallback): a logit margin of "
             f"**{f['threshold']:g}**, mean UA {best['mean']:.3f} (student alone {f['curve'][0]['mean']:.3f}) with the "
             f"teacher answering {best['share']:.0%} of clips. `--final` writes it into the students' bundle.json; "
             "the `auto` column above is at the service's threshold for the split students.", "",
             "| logit margin | " + " | ".join(names) + " | mean UA | teacher share |", "|---" * (len(names) + 3) + "|"]
    lines += [f"| {r['threshold']:g} | " + " | ".join(f"{r[n]:.3f} ({r[n + ' share']:.0%})" for n in names)
              + f" | {r['mean']:.3f} | {r['share']:.0%} |" for r in f["curve"]]
    return lines


def write_final(final: Path, result: dict, summary: dict) -> dict:
    """Cards and bundle.json of the final models: the recipe's scores per corpus (they have no
    test set) and their own scores on the cross corpora."""
    for bundle in sorted((final / "bundles").iterdir()):
        meta = load_bundle(bundle).to_json()
        model = bundle.name   # the splits' bundle of the same name estimates it
        rows = {name: {"kind": r["kind"], "ua": r[model]["ua"], "macro_f1": r[model]["macro_f1"]}
                for name, r in summary["corpora"].items() if model in r}
        cross = {n[len("cross-"):]: r[bundle.name]["ua"] for n, r in result["sets"].items() if n.startswith("cross-")}
        meta["metrics"] = {"estimates": rows, "heldout_mean_ua": summary["heldout_mean"].get(model),
                           "cross_corpus_ua": cross}
        meta["extra"]["comparison"] = estimates_markdown(rows, summary["heldout_mean"].get(model), cross, summary)
        if summary.get("fallback") and model in ("student", "student-int8"):
            meta["fallback_threshold"] = summary["fallback"]["threshold"]
        write_bundle(bundle, meta, model_card(meta, None, meta["extra"]["description"]))
    final_summary = {"bundles": sorted(b.name for b in (final / "bundles").iterdir()), "sets": result["sets"]}
    (final / "summary.json").write_text(json.dumps(final_summary, indent=2))
    return final_summary


def estimates_markdown(rows: dict, mean: float | None, cross: dict, summary: dict) -> str:
    lines = ["", f"## Expected scores (this recipe, splits {', '.join(summary['splits'])})",
             "Measured on speakers the models of each split never heard: a corpus's test speakers over the "
             "k folds, a whole corpus left out of training, and corpora never trained on.", "",
             "| set | UA | macro-F1 |", "|---|---|---|"]
    lines += [f"| {name}{' (k-fold)' if r['kind'] == 'k-fold' else ''} | {r['ua']:.3f} | {r['macro_f1']:.3f} |"
              for name, r in rows.items()]
    if mean is not None:
        lines.append(f"| mean over held-out corpora | {mean:.3f} | |")
    lines += [f"\nThis model on {n} (never trained on): UA {ua:.3f}." for n, ua in cross.items()]
    return "\n".join(lines) + "\n"
