"""Speaker-independent splits: no speaker is ever in two parts.

A `Split` names the speakers of each part (train / val / test) and carries the counts
it was made with; it is written as JSON next to every run's output (`write_split`) and
read back with `read_split`. The split file looks like::

    {"format": 1, "seed": 0, "fold": null, "k": null,
     "speakers": {"train": ["ravdess:01", ...], "val": [...], "test": [...]},
     "counts": {"train": {"speakers": 14, "utterances": 616,
                          "labels": {"angry": 112, ...},
                          "sex": {"male": 7, "female": 7, "unknown": 0}}, ...}}

Test and val speakers are drawn half male, half female as far as the speakers allow
(unknown-sex speakers in proportion to their share), so a test score is not one sex's
score. Same records + same arguments + same seed -> same split, whatever the record order.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from service.labels import LABELS
from training.records import Utterance

log = logging.getLogger(__name__)

PARTS = ("train", "val", "test")
SEXES = ("male", "female", "unknown")
FORMAT = 1  # split-file format version

DEFAULT_VAL_FRACTION = 0.1   # of all speakers
DEFAULT_TEST_FRACTION = 0.2  # of all speakers (split_by_speaker only; k-fold uses 1/k)


@dataclass(frozen=True)
class Split:
    seed: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    # part -> {"speakers": n, "utterances": n, "labels": {label: n}, "sex": {sex: speakers}}
    counts: dict = field(default_factory=dict)
    fold: int | None = None  # k-fold: index of this split's test fold (0-based)
    k: int | None = None

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for part in PARTS:
            for s in getattr(self, part):
                if s in seen:
                    raise ValueError(f"speaker {s!r} is in both {seen[s]} and {part}; "
                                     "expected every speaker in exactly one part")
                seen[s] = part

    def parts(self) -> dict[str, tuple[str, ...]]:
        """Part name -> its speakers."""
        return {part: getattr(self, part) for part in PARTS}


def split_by_speaker(records: list[Utterance], *,
                     val_speakers: int | None = None, val_fraction: float | None = None,
                     test_speakers: int | None = None, test_fraction: float | None = None,
                     seed: int = 0) -> Split:
    """One speaker-disjoint train/val/test split, sex-balanced val and test.

    Give each of val and test as a speaker count or as a fraction of all speakers
    (default: val 0.1, test 0.2; a fraction above zero gives at least one speaker).
    """
    sexes = _speaker_sexes(records)
    n = len(sexes)
    n_test = _part_size("test", test_speakers, test_fraction, DEFAULT_TEST_FRACTION, n)
    n_val = _part_size("val", val_speakers, val_fraction, DEFAULT_VAL_FRACTION, n)
    if n_test + n_val + 1 > n:
        raise ValueError(f"{n} speakers; need at least {n_test + n_val + 1} "
                         f"(test {n_test} + val {n_val} + train 1)")
    rng = random.Random(seed)
    pools = _shuffled_pools(sexes, rng)
    test = _pick(pools, n_test, rng)
    val = _pick(pools, n_val, rng)
    train = [s for pool in pools.values() for s in pool]
    return _make_split(records, sexes, train, val, test, seed=seed)


def kfold_by_speaker(records: list[Utterance], k: int, *, seed: int = 0,
                     val_speakers: int | None = None, val_fraction: float | None = None
                     ) -> list[Split]:
    """k speaker-disjoint splits; every speaker is in exactly one test fold.

    Test folds differ in size by at most one speaker and spread each sex evenly. Each
    split's val speakers are drawn, sex-balanced, from the speakers outside its test
    fold (a count, or a fraction of all speakers; default 0.1).
    """
    if not isinstance(k, int) or k < 2:
        raise ValueError(f"k={k!r}; expected an integer >= 2")
    sexes = _speaker_sexes(records)
    n = len(sexes)
    n_val = _part_size("val", val_speakers, val_fraction, DEFAULT_VAL_FRACTION, n)
    largest_fold = -(-n // k)
    if n < k or largest_fold + n_val + 1 > n:
        raise ValueError(f"{n} speakers; {k} folds need at least "
                         f"{max(k, largest_fold + n_val + 1)} (a test fold of "
                         f"{largest_fold} + val {n_val} + train 1, and one speaker per fold)")
    rng = random.Random(seed)
    # Deal speakers round-robin, males first then females continuing the same cycle: each
    # fold gets an even share of each sex and fold sizes differ by at most one.
    order = [s for pool in _shuffled_pools(sexes, rng).values() for s in pool]
    folds = [order[i::k] for i in range(k)]

    splits = []
    for i, test in enumerate(folds):
        in_test = set(test)
        rest = {s: x for s, x in sexes.items() if s not in in_test}
        pools = _shuffled_pools(rest, rng)
        val = _pick(pools, n_val, rng)
        train = [s for pool in pools.values() for s in pool]
        splits.append(_make_split(records, sexes, train, val, test, seed=seed, fold=i, k=k))
    return splits


def kfold_by_corpus(records: list[Utterance], k: int, *, seed: int = 0,
                    val_speakers: int | None = None, val_fraction: float | None = None) -> list[Split]:
    """k splits that fold every corpus's speakers separately: fold i tests fold i of each
    corpus (`kfold_by_speaker` per corpus, val speakers drawn per corpus), so a corpus with
    few speakers is in every test fold instead of in one. One corpus: `kfold_by_speaker`."""
    per_corpus = [kfold_by_speaker(recs, k, seed=seed, val_speakers=val_speakers, val_fraction=val_fraction)
                  for recs in _by_corpus(records).values()]
    return [_merge(records, splits, seed=seed, fold=i, k=k) for i, splits in enumerate(zip(*per_corpus))]


def split_by_corpus(records: list[Utterance], *, seed: int = 0, val_speakers: int | None = None,
                    val_fraction: float | None = None, test_speakers: int = 0) -> Split:
    """`split_by_speaker` within each corpus (the counts are per corpus), merged."""
    return _merge(records, [split_by_speaker(recs, val_speakers=val_speakers, val_fraction=val_fraction,
                                             test_speakers=test_speakers, seed=seed)
                            for recs in _by_corpus(records).values()], seed=seed)


def leave_one_corpus_out(records: list[Utterance], held_out: str, *, seed: int = 0,
                         val_speakers: int | None = None, val_fraction: float | None = None) -> Split:
    """Train on every corpus but `held_out` (val speakers drawn from each of them), test on
    all of `held_out`'s speakers: how a model does on a recording set-up, language and
    speakers it never saw."""
    by_corpus = _by_corpus(records)
    if held_out not in by_corpus or len(by_corpus) < 2:
        raise ValueError(f"held-out corpus {held_out!r}; the records hold {sorted(by_corpus)} "
                         "(leave-one-corpus-out needs two corpora or more)")
    rest = split_by_corpus([r for r in records if r.corpus != held_out], seed=seed,
                           val_speakers=val_speakers, val_fraction=val_fraction)
    test = sorted({r.speaker for r in by_corpus[held_out]})
    return _make_split(records, _speaker_sexes(records), list(rest.train), list(rest.val), test, seed=seed)


def _merge(records: list[Utterance], splits, **kw) -> Split:
    parts = ([s for split in splits for s in getattr(split, part)] for part in PARTS)
    return _make_split(records, _speaker_sexes(records), *parts, **kw)


def _by_corpus(records: list[Utterance]) -> dict[str, list[Utterance]]:
    out: dict[str, list[Utterance]] = {}
    for r in records:
        out.setdefault(r.corpus, []).append(r)
    return dict(sorted(out.items()))


def apply_split(records: list[Utterance], split: Split) -> dict[str, list[Utterance]]:
    """Records per part ("train", "val", "test"), each in the order given.

    Raises ValueError when a record's speaker is in no part (the split was made for
    other records); speakers of the split without records only give a warning.
    """
    part_of = {s: part for part, speakers in split.parts().items() for s in speakers}
    out: dict[str, list[Utterance]] = {part: [] for part in PARTS}
    stray = Counter()
    for r in records:
        part = part_of.get(r.speaker)
        if part is None:
            stray[r.speaker] += 1
        else:
            out[part].append(r)
    if stray:
        raise ValueError(f"{len(stray)} speakers are in no part of the split: "
                         f"{sorted(stray)[:10]}; expected a split made for these records")
    absent = sorted(set(part_of) - {r.speaker for r in records})
    if absent:
        log.warning("split speakers without records: %d, e.g. %s", len(absent), absent[:5])
    return out


def write_split(split: Split, path: str | Path) -> None:
    """Write `split` as JSON (format in the module docstring)."""
    doc = {"format": FORMAT, "seed": split.seed, "fold": split.fold, "k": split.k,
           "speakers": {part: list(speakers) for part, speakers in split.parts().items()},
           "counts": split.counts}
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")


def read_split(path: str | Path) -> Split:
    """Read a split written by `write_split`; ValueError names what is wrong."""
    try:
        doc = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a JSON split file ({e})") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"{path}: split format {got!r}; expected {FORMAT}")
    if not isinstance(doc.get("seed"), int):
        raise ValueError(f"{path}: seed {doc.get('seed')!r}; expected an integer")
    speakers = doc.get("speakers")
    if not isinstance(speakers, dict) or sorted(speakers) != sorted(PARTS):
        raise ValueError(f"{path}: 'speakers' must map each of {PARTS} to a list")
    return Split(seed=doc.get("seed"), fold=doc.get("fold"), k=doc.get("k"),
                 counts=doc.get("counts", {}),
                 **{part: tuple(speakers[part]) for part in PARTS})


# --- helpers -----------------------------------------------------------------------------

def _speaker_sexes(records: list[Utterance]) -> dict[str, str]:
    """Speaker -> "male" | "female" | "unknown"; a speaker with two sexes is an error."""
    if not records:
        raise ValueError("no records to split; expected at least one utterance")
    sexes: dict[str, str] = {}
    for r in records:
        sex = r.sex or "unknown"
        if sex not in SEXES:
            raise ValueError(f"utterance {r.id}: sex {r.sex!r}; expected male, female or empty")
        old = sexes.setdefault(r.speaker, sex)
        if old != sex:
            if old != "unknown" and sex != "unknown":
                raise ValueError(f"speaker {r.speaker!r} is both {old} and {sex} "
                                 f"(e.g. utterance {r.id})")
            sexes[r.speaker] = sex if old == "unknown" else old  # known beats unknown
    return sexes


def _part_size(part: str, count: int | None, fraction: float | None, default: float,
               n: int) -> int:
    if count is not None and fraction is not None:
        raise ValueError(f"give {part}_speakers or {part}_fraction, not both")
    if count is not None:
        if not isinstance(count, int) or count < 0:
            raise ValueError(f"{part}_speakers={count!r}; expected an integer >= 0")
        return count
    fraction = default if fraction is None else fraction
    if not 0 <= fraction < 1:
        raise ValueError(f"{part}_fraction={fraction!r}; expected 0 <= fraction < 1")
    return max(1, round(fraction * n)) if fraction > 0 else 0


def _shuffled_pools(sexes: dict[str, str], rng: random.Random) -> dict[str, list[str]]:
    """Sex -> speakers, sorted then shuffled (sorting makes record order irrelevant)."""
    pools = {sex: sorted(s for s, x in sexes.items() if x == sex) for sex in SEXES}
    for pool in pools.values():
        rng.shuffle(pool)
    return pools


def _pick(pools: dict[str, list[str]], n: int, rng: random.Random) -> list[str]:
    """Take `n` speakers out of `pools`: half male, half female as far as they go."""
    size = {sex: len(pool) for sex, pool in pools.items()}
    total = sum(size.values())
    if n > total:  # callers check sizes first; this guards the fill loop below
        raise ValueError(f"{total} speakers left; need {n}")
    take = dict.fromkeys(SEXES, 0)
    take["unknown"] = round(n * size["unknown"] / total) if total else 0
    known = n - take["unknown"]
    take["male"] = take["female"] = known // 2
    if known % 2:  # the odd one from the larger group; a coin decides a tie
        bigger = ("male" if size["male"] > size["female"] else
                  "female" if size["female"] > size["male"] else rng.choice(["male", "female"]))
        take[bigger] += 1
    take = {sex: min(take[sex], size[sex]) for sex in SEXES}
    while sum(take.values()) < n:  # a group ran short: fill from the one with most left
        sex = max(SEXES, key=lambda x: size[x] - take[x])
        take[sex] += 1
    picked = []
    for sex in SEXES:
        picked += pools[sex][:take[sex]]
        del pools[sex][:take[sex]]
    return picked


def _make_split(records: list[Utterance], sexes: dict[str, str], train: list[str],
                val: list[str], test: list[str], **kw) -> Split:
    parts = {"train": sorted(train), "val": sorted(val), "test": sorted(test)}
    part_of = {s: part for part, speakers in parts.items() for s in speakers}
    counts = {part: {"speakers": len(speakers), "utterances": 0,
                     "labels": dict.fromkeys(LABELS, 0),
                     "sex": {sex: sum(sexes[s] == sex for s in speakers) for sex in SEXES}}
              for part, speakers in parts.items()}
    for r in records:
        c = counts[part_of[r.speaker]]
        c["utterances"] += 1
        if r.label is not None:
            c["labels"][r.label] += 1
    return Split(counts=counts, **{part: tuple(s) for part, s in parts.items()}, **kw)
