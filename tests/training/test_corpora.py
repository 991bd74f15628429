"""Corpus adapters on generated corpora (tiny real audio files) and on ../shared/data."""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from pathlib import Path

import pytest

from service.labels import LABELS
from tests.support.corpora import cremad_stems, make_cremad, make_cremad_meta, make_ravdess, ravdess_name, write_empty_wav, write_manifest, write_noise
from devtools.data import CREMAD_META_DIR, RAVDESS_DIR
from training.corpora import (CORPORA, prepare_corpus, prepare_cremad, prepare_manifest, prepare_ravdess,
                              read_corpus_info, write_corpus_info)
from training.records import read_records, write_records

needs_ravdess = pytest.mark.skipif(not (RAVDESS_DIR / "manifest.csv").is_file(),
                                   reason=f"real RAVDESS not found at {RAVDESS_DIR}")
needs_cremad_meta = pytest.mark.skipif(not (CREMAD_META_DIR / "summaryTable.csv").is_file(),
                                       reason=f"CREMA-D metadata not found at {CREMAD_META_DIR}")


def label_counts(records) -> dict[str, int]:
    c = Counter(r.label for r in records)
    return {label: c[label] for label in LABELS}


# --- RAVDESS, generated -----------------------------------------------------------------

@pytest.mark.parametrize("ext", [".wav", ".flac"])
def test_ravdess_names_give_six_classes(tmp_path, ext, caplog):
    make_ravdess(tmp_path, actors=(1, 2), ext=ext)
    with caplog.at_level(logging.INFO, logger="training.corpora.ravdess"):
        records = prepare_ravdess(tmp_path)

    # per actor: neutral 1 clip (normal only), the other emotions 2 (normal, strong)
    assert label_counts(records) == {"angry": 4, "disgust": 4, "fear": 4, "happy": 4,
                                     "sad": 4, "neutral": 2}
    assert {r.speaker for r in records} == {"ravdess:01", "ravdess:02"}
    assert {r.speaker: r.sex for r in records} == {"ravdess:01": "male", "ravdess:02": "female"}
    assert {r.corpus for r in records} == {"ravdess"}
    assert {r.intensity for r in records} == {"normal", "strong"}
    assert all(Path(r.path).is_absolute() and Path(r.path).is_file() for r in records)
    stem = ravdess_name(1, "05", "02")
    angry = next(r for r in records if r.id == f"ravdess:{stem}")
    assert (angry.label, angry.intensity, Path(angry.path).name) == ("angry", "strong", stem + ext)
    assert [r.id for r in records] == sorted(r.id for r in records)
    # calm (2 x 2) and surprised (2 x 2) are excluded, and the log says so
    assert "excluded 8 clips" in caplog.text and "calm 4" in caplog.text
    assert "surprised 4" in caplog.text


def test_ravdess_calm_as_neutral(tmp_path):
    make_ravdess(tmp_path, actors=(3,))
    records = prepare_ravdess(tmp_path, calm_as_neutral=True)
    assert label_counts(records)["neutral"] == 3  # 1 neutral + 2 calm
    assert "surprised" not in {r.label for r in records} and len(records) == 13


def test_ravdess_manifest_matches_file_names(tmp_path):
    make_ravdess(tmp_path / "a", actors=(1, 2), ext=".flac", manifest=True)
    make_ravdess(tmp_path / "b", actors=(1, 2), ext=".flac")
    from_manifest = prepare_ravdess(tmp_path / "a")
    from_names = prepare_ravdess(tmp_path / "b")
    strip = lambda rs: [(r.id, r.speaker, r.label, r.sex, r.intensity) for r in rs]  # noqa: E731
    assert strip(from_manifest) == strip(from_names)


def test_ravdess_manifest_missing_file_is_an_error(tmp_path):
    files = make_ravdess(tmp_path, actors=(1,), manifest=True)
    files[3].unlink()
    rel = files[3].relative_to(tmp_path)
    with pytest.raises(ValueError, match=rf"row 5: '{rel}' does not exist"):
        prepare_ravdess(tmp_path)


def test_ravdess_song_is_excluded_and_logged(tmp_path, caplog):
    make_ravdess(tmp_path, actors=(1,), emotions=("05",))
    write_noise(tmp_path / "Actor_01" / f"{ravdess_name(1, '05', channel='02')}.wav")
    with caplog.at_level(logging.INFO, logger="training.corpora.ravdess"):
        records = prepare_ravdess(tmp_path)
    assert len(records) == 2 and "1 song clips" in caplog.text


@pytest.mark.parametrize("name, expected", [
    ("03-01-05-01-01-01.wav", "seven two-digit fields"),
    ("recording.wav", "seven two-digit fields"),
    ("03-01-09-01-01-01-01.wav", "emotion code 09"),
    ("03-01-05-03-01-01-01.wav", "intensity code 03"),
    ("01-01-05-01-01-01-01.wav", "modality 01"),
    ("03-01-05-01-01-01-02.wav", "actor 02 in a folder named Actor_01"),
])
def test_ravdess_bad_names_are_named(tmp_path, name, expected):
    make_ravdess(tmp_path, actors=(1,), emotions=("05",))
    write_noise(tmp_path / "Actor_01" / name)
    with pytest.raises(ValueError, match=expected) as e:
        prepare_ravdess(tmp_path)
    assert name in str(e.value)


def test_ravdess_same_clip_twice_is_an_error(tmp_path):
    make_ravdess(tmp_path, actors=(1,), emotions=("05",), ext=".wav")
    make_ravdess(tmp_path, actors=(1,), emotions=("05",), ext=".flac")
    with pytest.raises(ValueError, match="appear twice"):
        prepare_ravdess(tmp_path)


def test_ravdess_empty_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="no manifest.csv"):
        prepare_ravdess(tmp_path)


# --- RAVDESS, the real converted copy (actors 01-20) -----------------------------------

@needs_ravdess
def test_real_ravdess_counts():
    records = prepare_ravdess(RAVDESS_DIR)
    # 1,200 clips: 160 per emotion except neutral (80, normal intensity only);
    # calm (160) and surprised (160) are outside the 6 classes.
    assert len(records) == 880
    assert label_counts(records) == {"angry": 160, "disgust": 160, "fear": 160,
                                     "happy": 160, "sad": 160, "neutral": 80}
    per_actor = Counter(r.speaker for r in records)
    assert sorted(per_actor) == [f"ravdess:{a:02d}" for a in range(1, 21)]
    assert set(per_actor.values()) == {44}
    assert Counter({r.speaker: r.sex for r in records}.values()) == {"male": 10, "female": 10}
    assert len({r.id for r in records}) == 880
    assert all(r.path.endswith(".flac") and os.path.isabs(r.path) for r in records[:20])


@needs_ravdess
def test_real_ravdess_calm_as_neutral():
    records = prepare_ravdess(RAVDESS_DIR, calm_as_neutral=True)
    assert len(records) == 1040 and label_counts(records)["neutral"] == 240


@needs_ravdess
def test_real_ravdess_records_round_trip(tmp_path):
    records = prepare_ravdess(RAVDESS_DIR)
    write_records(records, tmp_path / "records.csv")
    assert read_records(tmp_path / "records.csv") == records


# --- CREMA-D, generated ------------------------------------------------------------------

def test_cremad_intended_labels(tmp_path):
    make_cremad(tmp_path, cremad_stems(actors=(1001, 1002), sentences=("DFA", "IEO")))
    make_cremad(tmp_path, ["1001_IEO_HAP_HI", "1002_IEO_SAD_LO", "1002_IEO_ANG_MD"])
    make_cremad_meta(tmp_path / "meta", {1001: "Male", 1002: "Female"})
    records = prepare_cremad(tmp_path, meta_dir=tmp_path / "meta")

    assert len(records) == 27
    assert label_counts(records) == {"angry": 5, "disgust": 4, "fear": 4, "happy": 5,
                                     "sad": 5, "neutral": 4}
    assert {r.speaker: r.sex for r in records} == {"cremad:1001": "male", "cremad:1002": "female"}
    r = next(r for r in records if r.id == "cremad:1002_IEO_SAD_LO")
    assert (r.label, r.intensity, r.corpus) == ("sad", "low", "cremad")
    assert r.path == str((tmp_path / "AudioWAV" / "1002_IEO_SAD_LO.wav").resolve())
    assert {r.intensity for r in records} == {"", "low", "medium", "high"}


def test_cremad_perceived_excludes_ties_and_unknown_letters(tmp_path, caplog):
    stems = ["1001_DFA_ANG_XX", "1001_DFA_HAP_XX", "1001_DFA_SAD_XX", "1001_DFA_NEU_XX",
             "1002_DFA_FEA_XX"]
    make_cremad(tmp_path, stems)
    votes = dict(zip(stems, ["A", "A:H", "N", "X", "D"]))
    make_cremad_meta(tmp_path, {1001: "Male", 1002: "Female"}, votes)
    with caplog.at_level(logging.INFO, logger="training.corpora.cremad"):
        records = prepare_cremad(tmp_path, label_source="perceived")  # meta_dir defaults to root
    assert {r.id.removeprefix("cremad:"): r.label for r in records} == {
        "1001_DFA_ANG_XX": "angry", "1001_DFA_SAD_XX": "neutral", "1002_DFA_FEA_XX": "disgust"}
    assert "excluded 2 clips without an agreed perceived voice label" in caplog.text
    assert "1001_DFA_HAP_XX=A:H" in caplog.text


def test_cremad_perceived_needs_a_vote_for_every_clip(tmp_path):
    make_cremad(tmp_path, ["1001_DFA_ANG_XX", "1001_DFA_HAP_XX"])
    make_cremad_meta(tmp_path, {1001: "Male"}, {"1001_DFA_ANG_XX": "A"})
    with pytest.raises(ValueError, match=r"no VoiceVote for 1 clips.*1001_DFA_HAP_XX"):
        prepare_cremad(tmp_path, label_source="perceived")


@pytest.mark.parametrize("name, expected", [
    ("1001_DFA_ANG.wav", "expected <actor 4 digits>"),
    ("101_DFA_ANG_XX.wav", "expected <actor 4 digits>"),
    ("notes.wav", "expected <actor 4 digits>"),
    ("1001_DFA_BOR_XX.wav", "emotion code 'BOR'; expected one of ANG, DIS, FEA, HAP, SAD, NEU"),
    ("1001_DFA_ANG_ZZ.wav", "level 'ZZ'; expected one of LO, MD, HI, XX"),
])
def test_cremad_bad_names_are_named(tmp_path, name, expected):
    make_cremad(tmp_path, ["1001_DFA_ANG_XX"])
    write_noise(tmp_path / "AudioWAV" / name)
    make_cremad_meta(tmp_path, {1001: "Male"})
    with pytest.raises(ValueError, match=expected) as e:
        prepare_cremad(tmp_path)
    assert name in str(e.value)


def test_cremad_metadata_problems(tmp_path, caplog):
    make_cremad(tmp_path, ["1001_DFA_ANG_XX", "1003_DFA_ANG_XX"])
    with caplog.at_level(logging.WARNING, logger="training.corpora.cremad"):
        records = prepare_cremad(tmp_path)  # no demographics in root: sex unknown, warned
    assert {r.sex for r in records} == {""} and "speaker sex unknown" in caplog.text
    with pytest.raises(FileNotFoundError, match="VideoDemographics.csv"):
        prepare_cremad(tmp_path, meta_dir=tmp_path / "nowhere")
    make_cremad_meta(tmp_path / "meta", {1001: "Male"})
    with pytest.raises(ValueError, match=r"no row for actors \['1003'\]"):
        prepare_cremad(tmp_path, meta_dir=tmp_path / "meta")
    with pytest.raises(FileNotFoundError, match="summaryTable.csv"):
        prepare_cremad(tmp_path, label_source="perceived")
    with pytest.raises(ValueError, match="label_source 'voted'"):
        prepare_cremad(tmp_path, label_source="voted")
    with pytest.raises(FileNotFoundError, match="AudioWAV"):
        prepare_cremad(tmp_path / "meta")


def test_cremad_clip_without_audio_is_excluded_with_warning(tmp_path, caplog):
    make_cremad(tmp_path, ["1001_DFA_ANG_XX"])
    write_empty_wav(tmp_path / "AudioWAV" / "1076_MTI_SAD_XX.wav")
    make_cremad_meta(tmp_path, {1001: "Male", 1076: "Male"})
    with caplog.at_level(logging.WARNING, logger="training.corpora.cremad"):
        records = prepare_cremad(tmp_path)
    assert [r.id for r in records] == ["cremad:1001_DFA_ANG_XX"]
    assert "excluded 1 clips" in caplog.text and "1076_MTI_SAD_XX.wav" in caplog.text


# --- CREMA-D, generated audio + the real metadata ---------------------------------------

@needs_cremad_meta
def test_cremad_with_real_metadata(tmp_path):
    with open(CREMAD_META_DIR / "SentenceFilenames.csv", newline="") as f:
        stems = [r["Filename"] for r in csv.DictReader(f) if r["Filename"][:4] in ("1001", "1002")]
    make_cremad(tmp_path, stems)

    intended = prepare_cremad(tmp_path, meta_dir=CREMAD_META_DIR)
    assert len(intended) == 163
    assert label_counts(intended) == {"angry": 28, "disgust": 28, "fear": 28, "happy": 28,
                                      "sad": 28, "neutral": 23}
    assert {r.speaker: r.sex for r in intended} == {"cremad:1001": "male", "cremad:1002": "female"}

    perceived = prepare_cremad(tmp_path, meta_dir=CREMAD_META_DIR, label_source="perceived")
    # 16 of the 163 clips have a tied voice vote (e.g. "A:N") and are excluded
    assert len(perceived) == 147
    assert label_counts(perceived) == {"angry": 24, "disgust": 16, "fear": 20, "happy": 6,
                                       "sad": 4, "neutral": 77}
    assert {r.id for r in perceived} <= {r.id for r in intended}


# --- generic manifest ---------------------------------------------------------------------

def test_manifest_reads_relative_and_absolute_paths(tmp_path):
    a = write_noise(tmp_path / "corpus" / "audio" / "a.wav")
    b = write_noise(tmp_path / "elsewhere" / "b.flac")
    csv_path = write_manifest(tmp_path / "corpus" / "manifest.csv", [
        {"path": "audio/a.wav", "label": "happy", "speaker": "s1", "sex": "Female", "id": ""},
        {"path": str(b), "label": "neutral", "speaker": "s2", "sex": "", "id": "clip-b"},
    ])
    records = prepare_manifest(csv_path)
    assert [(r.id, r.path, r.speaker, r.label, r.sex, r.corpus) for r in records] == [
        ("manifest:audio/a.wav", str(a.resolve()), "manifest:s1", "happy", "female", "manifest"),
        ("manifest:clip-b", str(b.resolve()), "manifest:s2", "neutral", "", "manifest"),
    ]
    assert prepare_manifest(csv_path, corpus="mine")[0].speaker == "mine:s1"


def test_manifest_lists_every_bad_row_once(tmp_path):
    write_noise(tmp_path / "ok.wav")
    csv_path = write_manifest(tmp_path / "m.csv", [
        {"path": "ok.wav", "label": "happy", "speaker": "s1"},
        {"path": "ok.wav", "label": "surprised", "speaker": "s1"},
        {"path": "gone.wav", "label": "sad", "speaker": "s2"},
        {"path": "ok.wav", "label": "sad", "speaker": ""},
    ], columns=["path", "label", "speaker"])
    with pytest.raises(ValueError) as e:
        prepare_manifest(csv_path)
    msg = str(e.value)
    assert "3 bad entries" in msg
    assert "row 3: label 'surprised' is not one of angry, disgust" in msg
    assert "row 4: file 'gone.wav' not found" in msg
    assert "row 5: empty speaker" in msg


def test_manifest_caps_the_listed_problems(tmp_path):
    rows = [{"path": f"missing{i}.wav", "label": "sad", "speaker": "s"} for i in range(8)]
    with pytest.raises(ValueError, match=r"8 bad entries.*row 6:.*\.\.\. and 3 more$") as e:
        prepare_manifest(write_manifest(tmp_path / "m.csv", rows))
    assert "row 7" not in str(e.value)


def test_manifest_duplicate_ids_and_conflicting_sex(tmp_path):
    write_noise(tmp_path / "a.wav")
    csv_path = write_manifest(tmp_path / "m.csv", [
        {"path": "a.wav", "label": "sad", "speaker": "s", "sex": "male"},
        {"path": "a.wav", "label": "sad", "speaker": "s", "sex": "female"},
    ])
    with pytest.raises(ValueError, match=r"row 3: speaker 's' is female here but male in row 2, "
                                         r"id 'a.wav' repeats row 2"):
        prepare_manifest(csv_path)


def test_manifest_missing_columns(tmp_path):
    csv_path = write_manifest(tmp_path / "m.csv", [{"file": "a.wav", "label": "sad"}])
    with pytest.raises(ValueError, match=r"missing columns \['path', 'speaker'\]"):
        prepare_manifest(csv_path)
    with pytest.raises(FileNotFoundError):
        prepare_manifest(tmp_path / "none.csv")


# --- dispatch -----------------------------------------------------------------------------

def test_prepare_corpus_dispatches(tmp_path):
    make_ravdess(tmp_path / "r", actors=(1,))
    make_cremad(tmp_path / "c", ["1001_DFA_ANG_XX"])
    make_cremad_meta(tmp_path / "c", {1001: "Male"})
    write_noise(tmp_path / "m" / "a.wav")
    csv_path = write_manifest(tmp_path / "m" / "m.csv",
                              [{"path": "a.wav", "label": "sad", "speaker": "s"}])

    assert prepare_corpus("ravdess", tmp_path / "r") == prepare_ravdess(tmp_path / "r")
    assert len(prepare_corpus("ravdess", tmp_path / "r", calm_as_neutral=True)) == 13
    assert prepare_corpus("cremad", tmp_path / "c", meta_dir=tmp_path / "c")[0].sex == "male"
    assert prepare_corpus("manifest", csv_path, corpus="x")[0].id == "x:a.wav"


def test_prepare_corpus_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown corpus 'iemocap'; expected one of "
                                         "ravdess, nemo, cremad, manifest"):
        prepare_corpus("iemocap", tmp_path)
    with pytest.raises(ValueError, match="corpus 'ravdess' has no option meta_dir; "
                                         "expected calm_as_neutral"):
        prepare_corpus("ravdess", tmp_path, meta_dir=tmp_path)


# --- what an adapter says about its corpus --------------------------------------------------

@pytest.mark.parametrize("name,terms", [("ravdess", "CC BY-NC-SA 4.0"), ("cremad", "Open Database License 1.0")])
def test_each_adapter_states_its_licence(name, terms):
    lic = CORPORA[name].license(None)
    assert set(lic) == {"data", "weights"} and terms in lic["data"] and lic["weights"]


def test_a_manifest_corpus_states_its_licence_in_a_file_beside_it(tmp_path):
    csv_path = tmp_path / "manifest.csv"
    assert "not stated" in CORPORA["manifest"].license(csv_path)["data"]
    (tmp_path / "LICENSE.txt").write_text("  \nCC BY 4.0, Example Lab 2026\nfull text\n")
    lic = CORPORA["manifest"].license(csv_path)
    assert lic["data"] == "CC BY 4.0, Example Lab 2026 (LICENSE.txt of the corpus)" and "CC BY 4.0" in lic["weights"]


def test_ravdess_and_nemo_offer_unlabeled_transfer_clips(tmp_path):
    assert [n for n, c in CORPORA.items() if c.transfer] == ["ravdess", "nemo"]
    make_ravdess(tmp_path / "r", actors=(1,))
    transfer = CORPORA["ravdess"].transfer(tmp_path / "r")
    assert transfer and not {r.id for r in transfer} & {r.id for r in prepare_ravdess(tmp_path / "r")}
    assert all(r.label is None for r in transfer)


def test_a_run_records_its_corpora_and_each_licence(tmp_path):
    make_ravdess(tmp_path / "r", actors=(1,))
    (tmp_path / "run").mkdir()
    info = write_corpus_info(tmp_path / "run", [("ravdess", tmp_path / "r")])
    assert read_corpus_info(tmp_path / "run") == info
    assert info["name"] == "ravdess" and info["license"] == CORPORA["ravdess"].license(None)
    both = write_corpus_info(tmp_path / "run", [("ravdess", tmp_path / "r"), ("nemo", tmp_path / "n")])
    assert both["name"] == "ravdess-nemo" and "RAVDESS" in both["license"]["data"] and "nEMO" in both["license"]["data"]
    with pytest.raises(FileNotFoundError, match="corpus.json"):
        read_corpus_info(tmp_path)
