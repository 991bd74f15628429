"""The pipeline's summary over folds: per-fold and pooled numbers, as JSON and Markdown."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from export.cards import model_card
from service.bundle import write_bundle
from training.metrics import classification_report

MODELS = ("teacher", "student_alone", "student")
NAMES = {"teacher": "teacher", "student_alone": "student alone", "student": "distilled student"}


def pooled(reports: list[dict]) -> dict:
    """Metrics of the summed confusion matrix: with k-fold every clip is tested exactly once."""
    cm = np.sum([np.asarray(r["confusion"]) for r in reports], axis=0)
    labels = reports[0]["labels"]
    y_true = np.repeat(np.arange(len(labels)), cm.sum(axis=1))
    y_pred = np.concatenate([np.repeat(np.arange(len(labels)), row) for row in cm])
    return classification_report(y_true, y_pred, labels)


def write_summary(out: Path, folds: list[dict], k: int | None = None) -> dict:
    """summary.json and report.md over the folds that ran (`k`: how many the split has)."""
    summary = {"k": k or len(folds), "folds": [{"fold": f["fold"], "test_speakers": f["test_speakers"],
                          **{m: {k: f[m][k] for k in ("n", "accuracy", "ua", "macro_f1")} for m in MODELS}}
                         for f in folds]}
    for m in MODELS:
        uas = [f[m]["ua"] for f in folds]
        p = pooled([f[m] for f in folds])
        summary[m] = {"ua_mean": float(np.mean(uas)), "ua_std": float(np.std(uas)),
                      "pooled": {k: p[k] for k in ("n", "accuracy", "ua", "macro_f1", "per_class_recall")}}
    gains = [f["student"]["ua"] - f["student_alone"]["ua"] for f in folds]
    summary["kd_gain"] = {"per_fold": gains, "mean": float(np.mean(gains)),
                          "pooled": summary["student"]["pooled"]["ua"] - summary["student_alone"]["pooled"]["ua"]}
    summary["sets"] = summarize_sets(folds)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "report.md").write_text(markdown(summary) + sets_markdown(summary["sets"]))
    annotate_cards(out / folds[0]["fold"], folds[0], summary)
    return summary


def summarize_sets(folds: list[dict]) -> dict:
    """{set: {model: {...}}}: a cross corpus is scored by every fold's models (mean ± sd of UA
    over folds); degraded test speakers are each tested once (pooled, like the clean scores)."""
    out = {}
    for name in folds[0].get("sets", {}):
        out[name] = {}
        for model in folds[0]["sets"][name]:
            reps = [f["sets"][name][model] for f in folds]
            uas = [r["ua"] for r in reps]
            entry = {"ua_mean": float(np.mean(uas)), "ua_std": float(np.std(uas)), "per_fold": uas,
                     "pooled_ua": pooled(reps)["ua"]}
            if "teacher_share" in reps[0]:
                entry["teacher_share"] = float(np.mean([r["teacher_share"] for r in reps]))
            out[name][model] = entry
    return out


SET_MODELS = ("teacher", "teacher-int8", "student_alone", "student", "student-int8", "auto")


def sets_markdown(sets: dict) -> str:
    """Markdown table: UA of each model on each cross corpus and degradation."""
    if not sets:
        return ""
    models = [m for m in SET_MODELS if m in next(iter(sets.values()))]
    lines = ["## Other corpora and degraded audio", "",
             "UA. `cross-*`: another corpus, scored by every fold's models (mean ± sd over folds). "
             "`degraded-*`: the test speakers under a degradation (pooled over folds). `auto`: "
             "the student, or the teacher below the default fallback threshold (share sent to the teacher).", "",
             "| set | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    for name, by_model in sets.items():
        cells = []
        for m in models:
            e = by_model[m]
            cell = (f"{e['ua_mean']:.3f} ± {e['ua_std']:.3f}" if name.startswith("cross-") else f"{e['pooled_ua']:.3f}")
            cells.append(cell + (f" ({e['teacher_share']:.0%})" if "teacher_share" in e else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def scope(summary: dict) -> str:
    """"all 4 folds", or "1 of 4 folds" when only some folds ran."""
    done, k = len(summary["folds"]), summary["k"]
    return f"all {k} folds" if done == k else f"{done} of {k} folds"


# bundle folder -> the k-fold summary entry that estimates it
ESTIMATES = {"teacher": "teacher", "teacher-int8": "teacher", "student": "student", "student-int8": "student"}


def write_final(final: Path, result: dict, summary: dict) -> dict:
    """Cards and bundle.json of the final models: their k-fold estimate (they have no test set)
    and their own scores on the cross corpora."""
    k = scope(summary)
    for bundle in sorted((final / "bundles").iterdir()):
        meta = json.loads((bundle / "bundle.json").read_text())
        est = summary[ESTIMATES[bundle.name]]
        cross = {n[len("cross-"):]: r[bundle.name]["ua"] for n, r in result["sets"].items() if n.startswith("cross-")}
        meta["metrics"] = {"kfold_estimate": {"folds": k, "ua_pooled": est["pooled"]["ua"],
                                              "ua_mean": est["ua_mean"], "ua_std": est["ua_std"],
                                              "accuracy_pooled": est["pooled"]["accuracy"],
                                              "macro_f1_pooled": est["pooled"]["macro_f1"]},
                           "cross_corpus_ua": cross}
        meta["extra"]["comparison"] = "\n".join([
            "", f"## Expected score (this recipe on speakers it never saw, {k} of the cross-validation)",
            f"UA {est['pooled']['ua']:.3f} pooled over {est['pooled']['n']} clips (mean over folds "
            f"{est['ua_mean']:.3f} ± {est['ua_std']:.3f}); accuracy {est['pooled']['accuracy']:.3f}, macro-F1 "
            f"{est['pooled']['macro_f1']:.3f}. The k-fold models were trained on fewer speakers than this one.",
            *[f"\nThis model on another corpus ({n}, never trained on): UA {ua:.3f}." for n, ua in cross.items()], ""])
        write_bundle(bundle, meta, model_card(meta, None, meta["extra"]["description"]))
    final_summary = {"bundles": sorted(b.name for b in (final / "bundles").iterdir()), "sets": result["sets"]}
    (final / "summary.json").write_text(json.dumps(final_summary, indent=2))
    return final_summary


def comparison(fold: dict, s: dict) -> str:
    """Markdown: the three models on this bundle's test speakers and over all k folds."""
    rows = [f"| {NAMES[m]} | {fold[m]['ua']:.3f} | {fold[m]['accuracy']:.3f} | {fold[m]['macro_f1']:.3f} | "
            f"{s[m]['ua_mean']:.3f} ± {s[m]['ua_std']:.3f} | {s[m]['pooled']['ua']:.3f} |" for m in MODELS]
    return "\n".join([
        "", "## Teacher, student alone and distilled student (same test speakers)",
        f"| model | UA | accuracy | macro-F1 | UA, {scope(s)} mean ± sd | UA, pooled over folds |",
        "|---|---|---|---|---|---|", *rows,
        f"\nDistillation gain (distilled − alone), {scope(s)} by speaker: per fold "
        + ", ".join(f"{g:+.3f}" for g in s["kd_gain"]["per_fold"])
        + f"; mean {s['kd_gain']['mean']:+.3f}; pooled {s['kd_gain']['pooled']:+.3f}.", ""])


def annotate_cards(fold_dir: Path, fold: dict, s: dict) -> None:
    """Write the comparison into the model card of every bundle of the shipped fold."""
    for bundle in sorted((fold_dir / "bundles").iterdir()):
        meta = json.loads((bundle / "bundle.json").read_text())
        meta["extra"]["comparison"] = comparison(fold, s)
        rep = json.loads((fold_dir / "eval" / bundle.name / "metrics.json").read_text())
        write_bundle(bundle, meta, model_card(meta, rep, meta["extra"]["description"]))


def markdown(s: dict) -> str:
    lines = ["# Pipeline report", "",
             f"{scope(s)} of a cross-validation by speaker: every clip of the folds that ran is tested once, "
             "by models that never saw its speaker. UA = unweighted accuracy (mean per-class recall).", "",
             "| fold | test speakers | clips | teacher UA | student alone UA | distilled student UA | KD gain |",
             "|---|---|---|---|---|---|---|"]
    for f in s["folds"]:
        gain = f["student"]["ua"] - f["student_alone"]["ua"]
        lines.append(f"| {f['fold']} | {', '.join(f['test_speakers'])} | {f['teacher']['n']} | "
                     f"{f['teacher']['ua']:.3f} | {f['student_alone']['ua']:.3f} | {f['student']['ua']:.3f} | {gain:+.3f} |")
    lines.append("| mean ± sd | | | " + " | ".join(f"{s[m]['ua_mean']:.3f} ± {s[m]['ua_std']:.3f}" for m in MODELS)
                 + f" | {s['kd_gain']['mean']:+.3f} |")
    lines.append(f"| pooled | all | {s['teacher']['pooled']['n']} | "
                 + " | ".join(f"{s[m]['pooled']['ua']:.3f}" for m in MODELS) + f" | {s['kd_gain']['pooled']:+.3f} |")
    lines += ["", "Pooled accuracy / macro-F1: " + "; ".join(
        f"{NAMES[m]} {s[m]['pooled']['accuracy']:.3f} / {s[m]['pooled']['macro_f1']:.3f}" for m in MODELS), ""]
    return "\n".join(lines)
