"""`ser pipeline`: splits -> teacher -> student alone -> distilled student -> bundles -> evaluation.

Every stage writes into the run folder and is skipped when its output exists, so an
interrupted pipeline resumes where it stopped. Layout of runs/NAME (one split per folder):

    records.csv, pipeline.json, corpus.json   all utterances; the configuration; corpora and licences
    encoder_stats/<sha>-<window>/      the frozen encoder's statistics per clip (teacher_kind "frozen")
    views/<key>/                       the students' augmented training views (student "views" > 0)
    fold0/ .. foldK-1/                 k-fold by speaker within every corpus (`folds`)
    loco-<corpus>/                     leave one corpus out: trained on the others, tested on all of it
        split.json
        teacher/                       head.pt + head.json (frozen) or best/ (fine-tuned)
        student_alone/, student_kd/    LiteCNN checkpoints (alpha = 1 and alpha < 1; last.pt resumes one)
        bundles/{teacher,teacher-int8,student_alone,student,student-int8}/   ONNX bundles,
                                       calibrated on the val speakers
        eval/<bundle>/sets/            per set: test-<corpus>, degraded-<condition>-<corpus>,
                                       cross-<name> (training.robustness)
    report.md, summary.json            the corpus x model tables over the splits that ran, and the
                                       fallback threshold chosen on the folds (pipeline.fallback)
    final/                             `--final`: the same stages on every speaker but the val ones
                                       (no test set; the cards carry the estimates above, the
                                       students' bundle.json the fallback threshold)
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from export.bundles import export_fold_bundles
from pipeline.fallback import choose, fold_sets
from pipeline.report import write_final, write_summary
from pipeline.teachers import soft_labels, teacher_features, train_teacher_stage, view_targets
from training.data import load_clips
from training.config import from_dict
from training.frozen_teacher import HeadConfig, balance_weights
from training.records import Utterance, read_records, write_records
from training.robustness import evaluate_sets, robustness_sets
from training.splits import (Split, apply_split, kfold_by_corpus, leave_one_corpus_out, read_split, split_by_corpus,
                             write_split)
from training.train_student import StudentConfig, train_student
from training.teacher_folder import KINDS as TEACHER_KINDS, load_teacher_folder
from training.train_teacher import TeacherConfig
from training.whisper_convert import BUILTIN_WHISPER

DEFAULT_BACKBONE = "whisper-base"


@dataclass
class CorpusSource:
    name: str                         # a corpus adapter (training.corpora.CORPORA)
    root: str                         # its folder (for "manifest": the CSV file)
    weight: float = 1.0               # sampling weight of its clips, relative to the other corpora
    options: dict = field(default_factory=dict)   # keyword options of that adapter


@dataclass
class PipelineConfig:
    corpora: list[CorpusSource] = field(default_factory=list)   # [{"name": adapter, "root": folder, "weight": 1.0}]
    backbone: str = DEFAULT_BACKBONE  # a BUILTIN_WHISPER name, a hub id or a local folder
    teacher_kind: str = "frozen"      # "frozen" encoder + learned layer weights + head, or "finetune" it whole
    folds: int = 4                    # k-fold by speaker within every corpus: the estimate of the recipe
    run_folds: list[int] | None = None  # train and score only these folds of the k (None = all)
    loco: bool = True                 # with two corpora or more, also leave each one out in turn
    seed: int = 0
    val_speakers: int | None = None   # per corpus and split (early stopping, calibration); None: 10 %
    alpha: float = 0.5                # distillation: weight of the hard-label loss
    kd_temperature: float = 4.0
    transfer: bool = True             # the adapters' clips outside the six classes (RAVDESS calm and
                                      # surprised, nEMO surprised) as unlabeled distillation clips
    balanced: bool = True             # sample every (corpus, class) equally, not every clip (plain mixing)
    # The nested parts, given as dicts of overrides, typed when the config is made (unknown keys fail
    # there, before any audio is decoded): HeadConfig (frozen) or TeacherConfig (finetune; its
    # backbone is the pipeline's), and StudentConfig (alpha and temperature are the pipeline's).
    teacher: HeadConfig | TeacherConfig | dict = field(default_factory=dict)
    student: StudentConfig | dict = field(default_factory=dict)
    cross: dict = field(default_factory=dict)      # name -> manifest CSV of a corpus never trained on
                                                   # that every model is scored on (evaluation only)
    degraded_clips: int = 200         # per corpus: test clips scored under each degradation
    split_students: bool = True       # train the students in the splits too (False: their teacher only,
                                      # when the students' estimate is not worth its hours of CPU)

    def __post_init__(self) -> None:
        if self.teacher_kind not in TEACHER_KINDS:
            raise ValueError(f"teacher_kind {self.teacher_kind!r}; expected one of {TEACHER_KINDS}")
        self.corpora = [c if isinstance(c, CorpusSource) else from_dict(CorpusSource, c) for c in self.corpora]
        kind = HeadConfig if self.teacher_kind == "frozen" else TeacherConfig
        if isinstance(self.teacher, dict):
            self.teacher = from_dict(kind, {"seed": self.seed, **self.teacher})
        elif not isinstance(self.teacher, kind):
            raise ValueError(f"teacher_kind {self.teacher_kind!r} takes a {kind.__name__}, got {type(self.teacher).__name__}")
        if isinstance(self.student, dict):
            self.student = from_dict(StudentConfig, {"seed": self.seed, **self.student})
        self.student = replace(self.student, temperature=self.kd_temperature)

    def weight(self, corpus: str) -> float:
        return next((c.weight for c in self.corpora if c.name == corpus), 1.0)


def splits(records: list[Utterance], cfg: PipelineConfig) -> list[tuple[str, Split]]:
    """(folder name, split) of every split the recipe is measured on."""
    out = [(f"fold{i}", s) for i, s in enumerate(kfold_by_corpus(records, cfg.folds, seed=cfg.seed,
                                                                   val_speakers=cfg.val_speakers))
           if cfg.run_folds is None or i in cfg.run_folds]
    corpora = sorted({r.corpus for r in records})
    if cfg.loco and len(corpora) > 1:
        out += [(f"loco-{c}", leave_one_corpus_out(records, c, seed=cfg.seed, val_speakers=cfg.val_speakers))
                for c in corpora]
    return out


def students_of(split_name: str, cfg: PipelineConfig) -> tuple[str, ...]:
    """The students a split trains: the student alone (the distillation gain) on the k folds only."""
    if not cfg.split_students and split_name != "final":
        return ()
    return ("student_alone", "student_kd") if split_name.startswith("fold") else ("student_kd",)


def run_pipeline(records: list[Utterance], out: Path, cfg: PipelineConfig,
                 transfer: list[Utterance] = (), cross: dict[str, list[Utterance]] | None = None,
                 final: bool = False) -> dict:
    """The splits (the recipe's estimate), then with `final` the models to ship, trained on every
    speaker but the validation ones."""
    out.mkdir(parents=True, exist_ok=True)
    write_records(records, out / "records.csv")
    (out / "pipeline.json").write_text(json.dumps(asdict(cfg), indent=2))
    cross = cross or {}
    every = [*records, *transfer]
    clips = decode_corpus(every)
    named = splits(records, cfg)
    results = [run_fold(out / name, split, records, clips, cfg, transfer, cross, students_of(name, cfg))
               for name, split in named]
    folds = [out / name for name, _ in named if name.startswith("fold")]
    sets = fold_sets(folds, records, cross, cfg.degraded_clips)
    summary = write_summary(out, results, k=cfg.folds, fallback=choose(sets) if sets else None)
    if final:
        split = split_by_corpus(records, val_speakers=cfg.val_speakers, seed=cfg.seed)
        result = run_fold(out / "final", split, records, clips, cfg, transfer, cross, students_of("final", cfg))
        summary["final"] = write_final(out / "final", result, summary)
    return summary


def decode_corpus(records: list[Utterance]) -> dict[str, np.ndarray]:
    """Every clip decoded once for the whole run, untrimmed: each model trims it when its own
    Windowing says so (the frozen teacher's and a student's may differ), as the service does."""
    return dict(zip([r.id for r in records], load_clips(records, desc="decode corpus")))


def run_fold(fold: Path, split: Split, records: list[Utterance], clips: dict, cfg: PipelineConfig,
             transfer: list[Utterance], cross: dict[str, list[Utterance]],
             students: tuple[str, ...] = ("student_alone", "student_kd")) -> dict:
    """Teacher, students, bundles and their scores for one split (the first split written to
    fold/split.json is kept, so a resumed run trains on the same speakers)."""
    fold.mkdir(exist_ok=True)
    if not (fold / "split.json").exists():
        write_split(split, fold / "split.json")
    parts = apply_split(records, read_split(fold / "split.json"))
    train_speakers = {r.speaker for r in parts["train"]}
    transfer = [r for r in transfer if r.speaker in train_speakers]
    teacher_dir = train_teacher_stage(fold, parts, clips, cfg, backbone_folder(cfg.backbone, fold.parent))
    trained = {}
    for name in students:
        alpha = 1.0 if name == "student_alone" else cfg.alpha
        scfg = replace(cfg.student, alpha=alpha)
        if name == "student_alone":   # learns from the labels only: neither the teacher's logits nor its features
            scfg = replace(scfg, feature_kd=0.0, view_targets=False)
        # student.pt appears at the first best epoch; history.json only when training ended
        if not (fold / name / "history.json").exists():
            train_student_stage(fold, name, scfg, parts, transfer if alpha < 1 else [], clips, cfg, teacher_dir)
        trained[name] = fold / name / "student.pt"
    teacher, windowing = load_teacher_folder(teacher_dir)
    held_out = [*parts["test"], *(r for recs in cross.values() for r in recs)]
    result = export_fold_bundles(fold, parts, teacher, windowing, teacher_dir, trained, held_out)
    bundles = {b.name: b for b in sorted((fold / "bundles").iterdir())}
    result["sets"] = evaluate_sets(bundles, fold / "eval", robustness_sets(parts["test"], cross, cfg.degraded_clips))
    return result


def train_student_stage(fold: Path, name: str, cfg: StudentConfig, parts: dict, transfer: list[Utterance],
                        clips: dict, pcfg: PipelineConfig, teacher_dir: Path) -> None:
    """A student alone (alpha = 1) or distilled from the fold teacher's soft labels, which also
    cover the unlabeled transfer clips, and from its features when cfg.feature_kd > 0 (per clip,
    or per cached view with cfg.view_targets); sampled balanced over corpus x class when configured."""
    train = parts["train"] + list(transfer)
    if cfg.view_targets and (cfg.alpha < 1 or cfg.feature_kd > 0):
        logits, feats = view_targets(fold, teacher_dir, train, clips, cfg)
        feats = feats if cfg.feature_kd > 0 else None
    else:
        logits = soft_labels(fold, teacher_dir, train, clips) if cfg.alpha < 1 else None
        feats = teacher_features(fold, teacher_dir, train, clips) if cfg.feature_kd > 0 else None
    weights = balance_weights(train, pcfg.balanced) * np.array([pcfg.weight(r.corpus) for r in train])
    train_student(cfg, ([clips[r.id] for r in train], [r.label for r in train]),
                  ([clips[r.id] for r in parts["val"]], [r.label for r in parts["val"]]), fold / name,
                  teacher_logits=logits, weights=weights, ids=[r.id for r in train], views_root=fold.parent / "views",
                  teacher_features=feats)
    (fold / name / "transfer.json").write_text(json.dumps({"clips": len(transfer)}))


def backbone_folder(backbone: str, run: Path) -> Path:
    """A local folder of the backbone; a packaged Whisper is converted once per run."""
    if backbone not in BUILTIN_WHISPER:
        return Path(backbone)
    from training.whisper_convert import convert_whisper

    folder = run / backbone
    if not (folder / "config.json").exists():
        convert_whisper(None, folder, model=BUILTIN_WHISPER[backbone])
    return folder


def corpus_records(cfg: PipelineConfig) -> tuple[list[Utterance], list[Utterance], dict[str, list[Utterance]]]:
    """(labeled records, unlabeled transfer clips, cross-corpus test sets) from the corpora's
    manifests; no audio is decoded."""
    from training.corpora import adapter, prepare_corpus

    if not cfg.corpora:
        raise ValueError("no corpora; give --corpus/--data or a config with corpora [{name, root}]")
    records, transfer = [], []
    for c in cfg.corpora:
        records += prepare_corpus(c.name, c.root, **c.options)
        offered = adapter(c.name).transfer
        transfer += offered(c.root) if cfg.transfer and offered else []
    cross = {name: prepare_corpus("manifest", path, corpus=name) for name, path in cfg.cross.items()}
    return records, transfer, cross


def run_pipeline_command(cfg: PipelineConfig, out: str, final: bool = False) -> dict:
    from training.corpora import write_corpus_info

    t0 = time.time()
    run = Path(out)
    records, transfer, cross = corpus_records(cfg)
    if (run / "records.csv").exists():
        records = read_records(run / "records.csv")   # a resumed run keeps its records
    run.mkdir(parents=True, exist_ok=True)
    write_corpus_info(run, [(c.name, c.root) for c in cfg.corpora])   # what the bundles carry
    summary = run_pipeline(records, run, cfg, transfer, cross, final=final)
    summary["seconds"] = round(time.time() - t0)
    (run / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
