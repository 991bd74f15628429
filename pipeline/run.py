"""`ser pipeline`: split -> teacher -> student alone -> distilled student -> bundles -> evaluation.

Every stage writes into the run folder and is skipped when its output exists, so an
interrupted pipeline resumes where it stopped. Layout of runs/NAME (one fold per folder):

    records.csv, pipeline.json         all utterances; the resolved configuration
    fold0/ .. foldK-1/                 one speaker-disjoint split each (`--folds K`, K >= 2)
        split.json
        teacher/best/                  fine-tuned teacher (save_pretrained)
        teacher_logits/<sha>-...npz    cached teacher logits per example (pipeline.soft_labels)
        student_alone/, student_kd/    LiteCNN checkpoints (alpha = 1 and alpha < 1)
        bundles/{teacher,teacher-int8,student_alone,student,student-int8}/   ONNX bundles,
                                       calibrated on the val speakers
        eval/<bundle>/                 metrics.json, report.md, confusion.png on the test speakers;
                                       sets/: cross corpora, degraded audio (training.robustness)
    report.md, summary.json            the folds that ran (`--run-folds`): per-fold and pooled numbers
    final/                             `--final`: the same stages on every speaker but the val ones
                                       (no test set; the cards carry the k-fold estimate)
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from export.bundles import export_fold_bundles
from pipeline.report import write_final, write_summary
from pipeline.soft_labels import SOURCES, soft_labels
from training.data import load_clips
from training.records import Utterance, read_records, write_records
from training.robustness import evaluate_sets, robustness_sets
from training.splits import apply_split, kfold_by_speaker, read_split, split_by_speaker, write_split
from training.train_student import StudentConfig, train_student

# Backbones converted offline from PyPI packages (training.whisper_convert.PACKAGED).
BUILTIN_WHISPER = {"whisper-tiny.en": "tiny.en", "whisper-base": "base"}
DEFAULT_BACKBONE = "whisper-base"


@dataclass
class PipelineConfig:
    backbone: str = DEFAULT_BACKBONE  # a BUILTIN_WHISPER name, a hub id or a local folder
    folds: int = 4                    # k-fold by speaker: the estimate of the recipe
    run_folds: list[int] | None = None  # train and score only these folds of the k (None = all):
                                      # a quicker, noisier estimate; the report says which ran
    seed: int = 0
    val_speakers: int = 2             # per fold, drawn from the non-test speakers (early stopping, calibration)
    alpha: float = 0.5                # distillation: weight of the hard-label loss
    kd_temperature: float = 4.0
    transfer: bool = True             # the clips the corpus adapter offers beyond the six classes (RAVDESS:
                                      # calm, surprised) of the training speakers, as an unlabeled KD
                                      # transfer set (teacher soft labels only)
    teacher: dict = field(default_factory=dict)    # TeacherConfig overrides
    student: dict = field(default_factory=dict)    # StudentConfig overrides
    cross: dict = field(default_factory=dict)      # name -> manifest CSV of another corpus that
                                                   # every model is scored on (evaluation only)
    final_soft_labels: str = "teacher"  # the final student's soft labels: "teacher" (the final teacher),
                                        # "oof" or "ensemble" (of the k fold teachers; pipeline.soft_labels)

    def __post_init__(self) -> None:
        if self.final_soft_labels not in SOURCES:
            raise ValueError(f"final_soft_labels {self.final_soft_labels!r}; expected one of {SOURCES}")


def run_pipeline(records: list[Utterance], out: Path, cfg: PipelineConfig,
                 transfer: list[Utterance] = (), cross: dict[str, list[Utterance]] | None = None,
                 final: bool = False) -> dict:
    """k folds (the recipe's estimate), then with `final` the models to ship, trained on every
    speaker but the validation ones."""
    out.mkdir(parents=True, exist_ok=True)
    write_records(records, out / "records.csv")
    (out / "pipeline.json").write_text(json.dumps(asdict(cfg), indent=2))
    cross = cross or {}
    every = [*records, *transfer]
    clips = dict(zip([r.id for r in every], load_clips(every, trim=True, desc="decode corpus")))
    splits = kfold_by_speaker(records, cfg.folds, seed=cfg.seed, val_speakers=cfg.val_speakers)
    results = [run_fold(out / f"fold{i}", split, records, clips, cfg, transfer, cross)
               for i, split in enumerate(splits) if cfg.run_folds is None or i in cfg.run_folds]
    summary = write_summary(out, results, k=cfg.folds)
    if final:
        split = split_by_speaker(records, val_speakers=cfg.val_speakers, test_speakers=0, seed=cfg.seed)
        result = run_fold(out / "final", split, records, clips, cfg, transfer, cross, ("student_kd",),
                          cfg.final_soft_labels)
        summary["final"] = write_final(out / "final", result, summary)
    return summary


def run_fold(fold: Path, split, records: list[Utterance], clips: dict, cfg: PipelineConfig,
             transfer: list[Utterance], cross: dict[str, list[Utterance]],
             students: tuple[str, ...] = ("student_alone", "student_kd"), soft_source: str = "teacher") -> dict:
    """Teacher, students, bundles and their scores for one split (the first split written to
    fold/split.json is kept, so a resumed run trains on the same speakers). `soft_source`: where
    the distilled student's soft labels come from (pipeline.soft_labels.SOURCES)."""
    fold.mkdir(exist_ok=True)
    if not (fold / "split.json").exists():
        write_split(split, fold / "split.json")
    split = read_split(fold / "split.json")
    parts = apply_split(records, split)
    transfer = [r for r in transfer if r.speaker in split.train]
    data = {p: ([clips[r.id] for r in recs], [r.label for r in recs]) for p, recs in parts.items()}
    teacher_dir = train_teacher_stage(fold, data, cfg)
    trained = {}
    for name in students:
        alpha = 1.0 if name == "student_alone" else cfg.alpha
        scfg = StudentConfig.from_dict({"seed": cfg.seed, **cfg.student, "alpha": alpha,
                                        "temperature": cfg.kd_temperature})
        # student.pt appears at the first best epoch; history.json only when training ended
        if not (fold / name / "history.json").exists():
            train_student_stage(fold / name, scfg, parts, data, transfer if alpha < 1 else [], clips,
                                lambda recs, xs, c: soft_labels(fold, soft_source, cfg.folds, recs, xs, c))
        trained[name] = fold / name / "student.pt"
    result = export_fold_bundles(fold, parts, teacher_dir, trained)
    bundles = {b.name: b for b in sorted((fold / "bundles").iterdir())}
    result["sets"] = evaluate_sets(bundles, fold / "eval", robustness_sets(parts["test"], cross))
    return result


def train_student_stage(out: Path, cfg: StudentConfig, parts: dict, data: dict,
                        transfer: list[Utterance], clips: dict, soft) -> None:
    """A student alone (alpha = 1) or distilled from `soft(records, clips, cfg)`, the soft
    labels, which also cover the unlabeled transfer clips (label "" = no hard label)."""
    train = parts["train"] + list(transfer)
    train_data = (data["train"][0] + [clips[r.id] for r in transfer], data["train"][1] + [""] * len(transfer))
    logits = None
    if cfg.alpha < 1:
        logits = soft(train, train_data[0], cfg)
    train_student(cfg, train_data, data["val"], out, teacher_logits=logits, ids=[r.id for r in train])
    (out / "transfer.json").write_text(json.dumps({"clips": len(transfer)}))


def train_teacher_stage(fold: Path, data: dict, cfg: PipelineConfig) -> Path:
    from training.train_teacher import TeacherConfig, train_teacher

    best, done = fold / "teacher" / "best", fold / "teacher" / "COMPLETE"
    if done.exists():
        return best
    backbone = cfg.backbone
    if backbone in BUILTIN_WHISPER:
        backbone = str(whisper_backbone(BUILTIN_WHISPER[backbone], fold.parent / backbone))
    tcfg = TeacherConfig.from_dict({**cfg.teacher, "backbone": backbone, "seed": cfg.seed})
    # an interrupted run has last/ (weights, optimizer, epoch): continue from there
    train_teacher(tcfg, data["train"], data["val"], fold / "teacher", resume=(fold / "teacher" / "last").exists())
    done.touch()
    return best


def whisper_backbone(model: str, folder: Path) -> Path:
    """A packaged Whisper encoder as a transformers checkpoint, converted once per run."""
    from training.whisper_convert import convert_whisper

    if not (folder / "config.json").exists():
        convert_whisper(None, folder, encoder_only=True, model=model)
    return folder


def run_pipeline_command(corpus: str, data: str, out: str, cfg: PipelineConfig, final: bool = False,
                         **corpus_kw) -> dict:
    from training.corpora import adapter, prepare_corpus, write_corpus_info

    t0 = time.time()
    run = Path(out)
    records = read_records(run / "records.csv") if (run / "records.csv").exists() else \
        prepare_corpus(corpus, data, **corpus_kw)
    run.mkdir(parents=True, exist_ok=True)
    write_corpus_info(run, corpus, data)   # the name and licence export writes into the bundles
    offered = adapter(corpus).transfer
    transfer = offered(data) if cfg.transfer and offered else []
    cross = {name: prepare_corpus("manifest", path, corpus=name) for name, path in cfg.cross.items()}
    summary = run_pipeline(records, run, cfg, transfer, cross, final=final)
    summary["seconds"] = round(time.time() - t0)
    (run / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
