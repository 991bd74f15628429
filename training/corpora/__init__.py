"""Corpus adapters: one module per corpus, each yielding `training.records.Utterance` records.

    prepare_corpus("ravdess", "../shared/data/ravdess")
    prepare_corpus("cremad", "/data/CREMA-D", meta_dir="../shared/data/crema-d-meta")
    prepare_corpus("manifest", "my_corpus/manifest.csv")
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from training.corpora.cremad import prepare_cremad
from training.corpora.manifest import prepare_manifest
from training.corpora.ravdess import prepare_ravdess
from training.records import Utterance

# name -> adapter; for "manifest" the root is the CSV file itself.
ADAPTERS: dict[str, Callable[..., list[Utterance]]] = {
    "ravdess": prepare_ravdess,
    "cremad": prepare_cremad,
    "manifest": prepare_manifest,
}


def prepare_corpus(name: str, root: str | Path, **kw) -> list[Utterance]:
    """Run the adapter called `name` on `root`; `kw` go to that adapter."""
    try:
        adapter = ADAPTERS[name]
    except KeyError:
        raise ValueError(f"unknown corpus {name!r}; "
                         f"expected one of {', '.join(ADAPTERS)}") from None
    options = [p.name for p in inspect.signature(adapter).parameters.values()
               if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(kw) - set(options))
    if unknown:
        raise ValueError(f"corpus {name!r} has no option {', '.join(unknown)}; "
                         f"expected {', '.join(options) or 'none'}")
    return adapter(root, **kw)


__all__ = ["ADAPTERS", "prepare_corpus", "prepare_cremad", "prepare_manifest", "prepare_ravdess"]
