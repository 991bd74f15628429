"""`ser pipeline --dry-run`: the resolved configuration and what a run would do, without work.

It reads the corpora's manifests (no audio is decoded), cuts the same splits the run would,
and says for every stage whether its output is already in the run folder (a resumed run skips it).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from pipeline.run import PipelineConfig, corpus_records, splits, students_of
from pipeline.teachers import COMPLETE
from training.records import read_records
from training.splits import split_by_corpus


def plan_pipeline(cfg: PipelineConfig, out: str | Path, final: bool = False) -> str:
    """The configuration as the run would use it, the corpora found, and the plan per split."""
    run = Path(out)
    records, transfer, cross = corpus_records(cfg)
    if (run / "records.csv").exists():
        records = read_records(run / "records.csv")   # a resumed run keeps its records
    lines = ["resolved configuration:", json.dumps(asdict(cfg), indent=2), "", "corpora:"]
    for corpus, n in sorted(Counter(r.corpus for r in records).items()):
        speakers = len({r.speaker for r in records if r.corpus == corpus})
        lines.append(f"  {corpus}: {n} clips, {speakers} speakers")
    lines += [f"  transfer clips (no label, distillation only): {len(transfer)}",
              *(f"  cross-corpus test set {name}: {len(recs)} clips" for name, recs in cross.items()),
              ""]
    if cfg.teacher_kind == "frozen":
        cached = (run / "encoder_stats").is_dir()
        lines.append(f"encoder statistics cache ({cfg.backbone}): {'present' if cached else 'to compute'}")
    lines.append(f"plan in {run} (done: output present, skipped on resume):")
    todo = [(name, split) for name, split in splits(records, cfg)]
    if final:
        todo.append(("final", split_by_corpus(records, val_speakers=cfg.val_speakers, seed=cfg.seed)))
    for name, split in todo:
        lines.append(f"  {name}: train {len(split.train)} / val {len(split.val)} / test {len(split.test)} speakers")
        for stage, done in _stages(run / name, cfg, students_of(name, cfg)):
            lines.append(f"    {'done' if done else 'todo'}  {stage}")
    return "\n".join(lines)


def _stages(fold: Path, cfg: PipelineConfig, students: tuple[str, ...]) -> list[tuple[str, bool]]:
    """(stage, its output exists) in the order run_fold runs them."""
    teacher = f"teacher ({cfg.teacher_kind}: {type(cfg.teacher).__name__})"
    return [("split.json", (fold / "split.json").exists()), (teacher, (fold / "teacher" / COMPLETE).exists()),
            *((f"{s} ({cfg.student.epochs} epochs)", (fold / s / "history.json").exists()) for s in students),
            ("bundles", (fold / "bundles").is_dir()), ("evaluation", (fold / "eval").is_dir())]
