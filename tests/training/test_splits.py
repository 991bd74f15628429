"""Speaker-independent splits: disjoint, complete, deterministic, sex-balanced."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from service.labels import LABELS
from tests.support.corpora import make_records
from devtools.data import RAVDESS_DIR
from training.corpora import prepare_ravdess
from training.splits import (PARTS, Split, apply_split, kfold_by_speaker, read_split,
                             split_by_speaker, write_split)

SEEDS = [0, 1, 7, 2024]


def speakers_of(records) -> set[str]:
    return {r.speaker for r in records}


def sex_count(split: Split, part: str, records) -> Counter:
    sex = {r.speaker: r.sex or "unknown" for r in records}
    return Counter(sex[s] for s in getattr(split, part))


def assert_partition(split: Split, records) -> None:
    """Every speaker of `records` in exactly one part (Split itself refuses overlaps)."""
    parts = [set(getattr(split, p)) for p in PARTS]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == speakers_of(records)
    assert sum(map(len, parts)) == len(speakers_of(records))


# --- split_by_speaker ---------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_male, n_female, n_unknown", [(10, 10, 0), (13, 3, 0), (0, 0, 9),
                                                         (6, 5, 4), (2, 1, 0)])
def test_split_is_a_speaker_partition(seed, n_male, n_female, n_unknown):
    records = make_records(n_male, n_female, n_unknown)
    split = split_by_speaker(records, seed=seed)
    assert_partition(split, records)
    n = n_male + n_female + n_unknown
    assert len(split.test) == max(1, round(0.2 * n)) and len(split.val) == max(1, round(0.1 * n))
    parts = apply_split(records, split)
    for part in PARTS:
        assert speakers_of(parts[part]) == set(getattr(split, part))
    assert sum(map(len, parts.values())) == len(records)


@pytest.mark.parametrize("seed", SEEDS)
def test_split_is_deterministic_and_ignores_record_order(seed):
    records = make_records(8, 7, 2, per_label=2)
    shuffled = records[:]
    random.Random(seed).shuffle(shuffled)
    assert split_by_speaker(records, seed=seed) == split_by_speaker(shuffled, seed=seed)


def test_seed_changes_the_split():
    records = make_records(10, 10)
    assert len({split_by_speaker(records, seed=s).test for s in range(8)}) > 1


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_male, n_female, n_test, test_sexes", [
    (10, 10, 4, {"male": 2, "female": 2}),
    (13, 3, 4, {"male": 2, "female": 2}),   # balanced although males dominate
    (1, 9, 4, {"male": 1, "female": 3}),    # as balanced as one male allows
    (4, 6, 3, {"male": 1, "female": 2}),    # the odd one from the larger group
])
def test_val_and_test_are_sex_balanced(seed, n_male, n_female, n_test, test_sexes):
    records = make_records(n_male, n_female)
    split = split_by_speaker(records, test_speakers=n_test, val_speakers=2, seed=seed)
    assert dict(sex_count(split, "test", records)) == test_sexes
    val = sex_count(split, "val", records)
    assert val == {"male": 1, "female": 1} or n_male - test_sexes["male"] == 0


def test_unknown_sex_is_drawn_in_proportion():
    records = make_records(5, 5, 10)
    split = split_by_speaker(records, test_speakers=4, val_speakers=0, seed=3)
    assert sex_count(split, "test", records) == {"unknown": 2, "male": 1, "female": 1}
    assert split.val == ()


def test_split_counts():
    records = make_records(6, 4, per_label=2)
    split = split_by_speaker(records, test_speakers=2, val_speakers=2, seed=0)
    assert split.counts["test"] == {"speakers": 2, "utterances": 24,
                                    "labels": dict.fromkeys(LABELS, 4),
                                    "sex": {"male": 1, "female": 1, "unknown": 0}}
    assert split.counts["train"]["utterances"] == 72
    assert split.seed == 0 and split.fold is None


@pytest.mark.parametrize("kwargs, n_speakers, message", [
    ({}, 2, r"2 speakers; need at least 3 \(test 1 \+ val 1 \+ train 1\)"),
    ({"test_speakers": 5, "val_speakers": 5}, 10, r"10 speakers; need at least 11"),
    ({"val_speakers": 1, "val_fraction": 0.1}, 10, "give val_speakers or val_fraction, not both"),
    ({"test_fraction": 1.0}, 10, r"test_fraction=1.0; expected 0 <= fraction < 1"),
    ({"test_speakers": -1}, 10, r"test_speakers=-1; expected an integer >= 0"),
])
def test_split_errors(kwargs, n_speakers, message):
    with pytest.raises(ValueError, match=message):
        split_by_speaker(make_records(n_speakers), **kwargs)


def test_split_refuses_bad_records():
    with pytest.raises(ValueError, match="no records"):
        split_by_speaker([])
    records = make_records(3)
    records[-1] = records[-1].__class__(**{**records[-1].__dict__, "sex": "female"})
    with pytest.raises(ValueError, match=r"speaker 'toy:m02' is both male and female"):
        split_by_speaker(records)


def test_split_class_refuses_overlap():
    with pytest.raises(ValueError, match="speaker 'a' is in both train and test"):
        Split(seed=0, train=("a", "b"), val=(), test=("a",))


# --- kfold_by_speaker ---------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [2, 3, 5, 10])
@pytest.mark.parametrize("n_male, n_female, n_unknown", [(10, 10, 0), (9, 4, 3), (0, 0, 12)])
def test_kfold_covers_every_speaker_once(seed, k, n_male, n_female, n_unknown):
    records = make_records(n_male, n_female, n_unknown)
    folds = kfold_by_speaker(records, k, seed=seed, val_speakers=1 if k == 2 else 2)
    assert len(folds) == k
    assert [f.fold for f in folds] == list(range(k)) and {f.k for f in folds} == {k}
    tested = Counter(s for f in folds for s in f.test)
    assert set(tested) == speakers_of(records) and set(tested.values()) == {1}
    sizes = [len(f.test) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    for sex in ("male", "female", "unknown"):
        per_fold = [sex_count(f, "test", records)[sex] for f in folds]
        assert max(per_fold) - min(per_fold) <= 1, (sex, per_fold)
    for f in folds:
        assert_partition(f, records)


@pytest.mark.parametrize("seed", SEEDS)
def test_kfold_is_deterministic_and_val_is_balanced(seed):
    records = make_records(10, 10)
    folds = kfold_by_speaker(records, 5, seed=seed, val_speakers=2)
    assert folds == kfold_by_speaker(records[::-1], 5, seed=seed, val_speakers=2)
    for f in folds:
        assert sex_count(f, "test", records) == {"male": 2, "female": 2}
        assert sex_count(f, "val", records) == {"male": 1, "female": 1}
        assert len(f.train) == 14


@pytest.mark.parametrize("k, n_speakers, message", [
    (1, 10, r"k=1; expected an integer >= 2"),
    (5, 4, r"4 speakers; 5 folds need at least 5"),
    (2, 3, r"3 speakers; 2 folds need at least 4 \(a test fold of 2 \+ val 1 \+ train 1"),
])
def test_kfold_errors(k, n_speakers, message):
    with pytest.raises(ValueError, match=message):
        kfold_by_speaker(make_records(n_speakers), k)


# --- files and apply_split ----------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda rs: split_by_speaker(rs, seed=5),
    lambda rs: kfold_by_speaker(rs, 4, seed=5)[3],
])
def test_split_file_round_trip(tmp_path, make):
    records = make_records(5, 4, 1, per_label=2)
    split = make(records)
    write_split(split, tmp_path / "split.json")
    assert read_split(tmp_path / "split.json") == split
    doc = json.loads((tmp_path / "split.json").read_text())
    assert doc["seed"] == 5 and sorted(doc["speakers"]) == sorted(PARTS)
    assert sum(doc["counts"][p]["utterances"] for p in PARTS) == len(records)
    assert list(doc["counts"]["test"]["labels"]) == list(LABELS)


@pytest.mark.parametrize("content, message", [
    ("not json", "not a JSON split file"),
    ('{"format": 2, "seed": 0}', "split format 2; expected 1"),
    ('{"format": 1, "seed": "x"}', "seed 'x'; expected an integer"),
    ('{"format": 1, "seed": 0, "speakers": {"train": []}}', "'speakers' must map each of"),
    ('{"format": 1, "seed": 0, "speakers": {"train": ["a"], "val": [], "test": ["a"]}}',
     "speaker 'a' is in both train and test"),
])
def test_read_split_errors(tmp_path, content, message):
    (tmp_path / "split.json").write_text(content)
    with pytest.raises(ValueError, match=message):
        read_split(tmp_path / "split.json")


def test_apply_split_refuses_unknown_speakers(caplog):
    records = make_records(5, 5)
    split = split_by_speaker(records, seed=0)
    with pytest.raises(ValueError, match=r"1 speakers are in no part of the split: "
                                         r"\['other:m00'\]"):
        apply_split(records + make_records(1, corpus="other"), split)
    parts = apply_split([r for r in records if r.speaker != split.test[0]], split)
    assert "split speakers without records: 1" in caplog.text
    assert split.test[0] not in speakers_of(parts["test"])


# --- the real RAVDESS copy ----------------------------------------------------------------

@pytest.mark.skipif(not (RAVDESS_DIR / "manifest.csv").is_file(),
                    reason=f"real RAVDESS not found at {RAVDESS_DIR}")
def test_real_ravdess_splits():
    records = prepare_ravdess(RAVDESS_DIR)
    split = split_by_speaker(records, seed=0)
    assert_partition(split, records)
    assert [len(split.train), len(split.val), len(split.test)] == [14, 2, 4]
    assert sex_count(split, "test", records) == {"male": 2, "female": 2}
    assert split.counts["test"]["utterances"] == 4 * 44
    assert split.counts["test"]["labels"]["neutral"] == 4 * 4
    folds = kfold_by_speaker(records, 5, seed=0)
    assert sorted(s for f in folds for s in f.test) == sorted(speakers_of(records))
    assert all(sex_count(f, "test", records) == {"male": 2, "female": 2} for f in folds)
