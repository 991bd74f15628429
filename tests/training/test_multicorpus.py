"""Several corpora: the nEMO adapter, folds within every corpus, leave-one-corpus-out, balance."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf

from devtools.audio import voice
from devtools.data import NEMO_DIR
from training.corpora import prepare_corpus, prepare_nemo
from training.corpora.nemo import nemo_transfer_clips
from training.frozen_teacher import balance_weights
from training.records import Utterance, read_records, write_records
from training.splits import kfold_by_corpus, leave_one_corpus_out, split_by_corpus

NEMO_LABELS = ("angry", "fear", "happy", "neutral", "sad", "surprised")


def make_nemo(root, speakers=("EB0", "KS0")):
    root.mkdir(parents=True)
    rows = []
    for s, spk in enumerate(speakers):
        (root / spk).mkdir()
        for i, label in enumerate(NEMO_LABELS):
            path = f"{spk}/{spk}_{label}_1.flac"
            sf.write(root / path, voice(1.0, seed=10 * s + i), 16_000)
            rows.append({"path": path, "speaker": spk, "sex": "female" if s % 2 == 0 else "male", "age": "30",
                         "label": label, "text": f"Zdanie {i}.", "sample_rate": 16000, "duration_s": 1.0})
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def test_nemo_gives_five_classes_and_surprised_as_unlabeled_transfer(tmp_path):
    root = make_nemo(tmp_path / "nemo")
    records, transfer = prepare_nemo(root), nemo_transfer_clips(root)
    assert len(records) == 10 and {r.label for r in records} == {"angry", "fear", "happy", "neutral", "sad"}
    assert len(transfer) == 2 and all(r.label is None for r in transfer)
    assert records[0].speaker.startswith("nemo:") and records[0].text.startswith("Zdanie")
    write_records(records + transfer, tmp_path / "records.csv")
    assert read_records(tmp_path / "records.csv") == records + transfer   # None survives the CSV


def test_nemo_refuses_a_bad_row(tmp_path):
    root = make_nemo(tmp_path / "nemo")
    text = (root / "manifest.csv").read_text().replace(",angry,", ",furious,", 1)
    (root / "manifest.csv").write_text(text)
    with pytest.raises(ValueError, match="label 'furious'"):
        prepare_nemo(root)


@pytest.mark.skipif(not NEMO_DIR.is_dir(), reason=f"nEMO not present at {NEMO_DIR}")
def test_nemo_on_the_shared_copy():
    records = prepare_corpus("nemo", NEMO_DIR)
    assert len(records) == 2912 and len({r.speaker for r in records}) == 7
    assert "disgust" not in {r.label for r in records}
    assert len(nemo_transfer_clips(NEMO_DIR)) == 490


def records_of(corpus, speakers, labels=("angry", "sad"), per=2):
    return [Utterance(id=f"{corpus}:{s}{lab}{i}", path="x", speaker=f"{corpus}:{s}", label=lab, corpus=corpus,
                      sex="male" if s % 2 else "female")
            for s in range(speakers) for lab in labels for i in range(per)]


def test_folds_split_every_corpus_and_test_each_speaker_once():
    records = records_of("a", 8) + records_of("b", 4)
    splits = kfold_by_corpus(records, 2)
    for split in splits:
        for part in (split.train, split.val, split.test):
            assert {s.split(":")[0] for s in part} == {"a", "b"}
    assert sorted(s for split in splits for s in split.test) == sorted({r.speaker for r in records})


def test_leave_one_corpus_out_tests_all_of_it_and_trains_on_the_rest():
    records = records_of("a", 8) + records_of("b", 4)
    split = leave_one_corpus_out(records, "b")
    assert set(split.test) == {f"b:{s}" for s in range(4)}
    assert {s.split(":")[0] for s in (*split.train, *split.val)} == {"a"}
    with pytest.raises(ValueError, match="held-out corpus 'c'"):
        leave_one_corpus_out(records, "c")
    assert not split_by_corpus(records).test


def test_balance_gives_every_corpus_and_class_the_same_weight():
    records = records_of("a", 8, per=3) + records_of("b", 2, labels=("angry",))
    w = balance_weights(records)
    totals = {}
    for r, x in zip(records, w):
        totals[(r.corpus, r.label)] = totals.get((r.corpus, r.label), 0) + x
    assert np.allclose(list(totals.values()), next(iter(totals.values())))
    assert np.allclose(balance_weights(records, balanced=False), 1.0)
