"""A trained teacher folder says what it is: `kind.json` names its recipe, and
`load_teacher_folder` is the one loader, dispatching on that kind (never on which files exist).

    frozen     head.pt + head.json (training.frozen_teacher): a frozen encoder, layer statistics, a head
    finetune   best/ (+ last/, config.json) (training.train_teacher): the whole encoder fine-tuned
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from service.audio import Windowing

KIND_FILE = "kind.json"
KINDS = ("frozen", "finetune")


def write_kind(folder: Path, kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"teacher kind {kind!r}; expected one of {KINDS}")
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / KIND_FILE).write_text(json.dumps({"kind": kind}) + "\n")


def read_kind(folder: Path) -> str:
    path = Path(folder) / KIND_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a trained teacher folder (the pipeline's <split>/teacher/ "
                                "or the --out of training.train_teacher)")
    kind = json.loads(path.read_text()).get("kind")
    if kind not in KINDS:
        raise ValueError(f"{path}: kind {kind!r}; expected one of {KINDS}")
    return kind


def load_teacher_folder(folder: Path) -> tuple[nn.Module, Windowing]:
    """(torch model on raw waveform, in eval mode; the windowing it is served with) of a teacher folder."""
    folder = Path(folder)
    if read_kind(folder) == "frozen":
        from training.frozen_teacher import WINDOW, FrozenTeacher, build_stats, head_meta, load_head

        stats = build_stats(head_meta(folder)["backbone"])
        return FrozenTeacher(stats, load_head(folder)).eval(), WINDOW
    from training.teacher import load_teacher, teacher_window

    return load_teacher(folder / "best").eval(), teacher_window(folder / "best")
