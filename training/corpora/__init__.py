"""Corpus adapters: one module per corpus, each yielding `training.records.Utterance` records.

    prepare_corpus("ravdess", "../shared/data/ravdess")
    prepare_corpus("nemo", "../shared/data/nemo")
    prepare_corpus("cremad", "/data/CREMA-D", meta_dir="../shared/data/crema-d-meta")
    prepare_corpus("manifest", "my_corpus/manifest.csv")

An adapter owns everything about its corpus: the layout, the label codes, the licence that
bundles trained on it must carry, and any extra clips it can offer for distillation. A run
folder records the corpora it was made from in `corpus.json` (`write_corpus_info`), which
export reads back (`read_corpus_info`); nothing downstream branches on a corpus name.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from training.corpora.cremad import cremad_license, prepare_cremad
from training.corpora.manifest import manifest_license, prepare_manifest
from training.corpora.nemo import nemo_license, nemo_transfer_clips, prepare_nemo
from training.corpora.ravdess import prepare_ravdess, ravdess_license, ravdess_transfer_clips
from training.records import Utterance

CORPUS_FILE = "corpus.json"   # in a run folder: {"name": ..., "license": {"data": ..., "weights": ...}}


@dataclass(frozen=True)
class Corpus:
    prepare: Callable[..., list[Utterance]]          # (root, **options) -> records
    license: Callable[[str | Path | None], dict]     # root -> {"data": ..., "weights": ...}
    # Unlabeled clips of the corpus outside the six classes (root -> records), which a distilled
    # student can learn from through the teacher's soft labels; None: the corpus has none.
    transfer: Callable[[str | Path], list[Utterance]] | None = None


# name -> adapter; for "manifest" the root is the CSV file itself.
CORPORA: dict[str, Corpus] = {
    "ravdess": Corpus(prepare_ravdess, ravdess_license, ravdess_transfer_clips),
    "nemo": Corpus(prepare_nemo, nemo_license, nemo_transfer_clips),
    "cremad": Corpus(prepare_cremad, cremad_license),
    "manifest": Corpus(prepare_manifest, manifest_license),
}


def adapter(name: str) -> Corpus:
    try:
        return CORPORA[name]
    except KeyError:
        raise ValueError(f"unknown corpus {name!r}; expected one of {', '.join(CORPORA)}") from None


def prepare_corpus(name: str, root: str | Path, **kw) -> list[Utterance]:
    """Run the adapter called `name` on `root`; `kw` go to that adapter."""
    prepare = adapter(name).prepare
    options = [p.name for p in inspect.signature(prepare).parameters.values()
               if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(kw) - set(options))
    if unknown:
        raise ValueError(f"corpus {name!r} has no option {', '.join(unknown)}; "
                         f"expected {', '.join(options) or 'none'}")
    return prepare(root, **kw)


def write_corpus_info(run: Path, corpora: list[tuple[str, str | Path]]) -> dict:
    """Record in the run folder which corpora (name, root) it was made from, and their licences:
    a model trained on several corpora carries the terms of each."""
    each = [{"name": name, "license": adapter(name).license(root)} for name, root in corpora]
    info = {"name": "-".join(dict.fromkeys(c["name"] for c in each)), "corpora": each,
            "license": {key: "; ".join(dict.fromkeys(c["license"][key] for c in each)) for key in ("data", "weights")}}
    (Path(run) / CORPUS_FILE).write_text(json.dumps(info, indent=2))
    return info


def read_corpus_info(run: Path) -> dict:
    path = Path(run) / CORPUS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; a run folder records its corpora there (write_corpus_info)")
    return json.loads(path.read_text())


__all__ = ["CORPORA", "Corpus", "adapter", "prepare_corpus", "prepare_cremad", "prepare_manifest", "prepare_nemo",
           "prepare_ravdess",
           "read_corpus_info", "write_corpus_info"]
