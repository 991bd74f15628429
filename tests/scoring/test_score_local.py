"""`ser score` on the local engine: inputs, error rows, formats, agreement with /predict,
Ctrl-C, and kill -9 followed by --resume."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from service.bundle import load_bundle
from scoring.progress import Progress
from service.cli import main
from devtools.audio import encode, voice
from devtools.data import RAVDESS_DIR
from devtools.server import running_server

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_STUDENT = ROOT / "models" / "student"   # the served default


def clips(folder: Path, n: int, seconds: float = 1.5) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        paths.append(folder / f"clip{i:04d}.wav")
        sf.write(paths[-1], voice(seconds, seed=i), 16_000)
    return paths


def score(*args, bundle=None) -> int:
    extra = ["--student", str(bundle.path)] if bundle is not None else []
    return main(["score", *map(str, args), *extra, "--quiet"])


def ser_score(*args) -> list[str]:
    return [sys.executable, "-m", "service.cli", "score", *map(str, args)]


def by_path(out: Path) -> dict[str, dict]:
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == len({r["path"] for r in rows}), "a path written twice"
    return {r["path"]: r for r in rows}


def test_a_folder_with_bad_files_gets_one_error_row_each(tmp_path, student_bundle):
    good = clips(tmp_path / "in" / "sub", 3)
    (tmp_path / "in" / "corrupt.flac").write_bytes(b"fLaC" + os.urandom(2000))
    (tmp_path / "in" / "empty.wav").write_bytes(b"")
    (tmp_path / "in" / "text.mp3").write_text("not audio at all, a transcript\n" * 20)
    (tmp_path / "in" / "notes.txt").write_text("a text file that is not audio by its name")
    short = tmp_path / "cut.wav"   # named on the command line: scored whatever it is
    short.write_bytes(encode(voice(1.0), 16_000, "WAV", "PCM_16")[:500])
    out = tmp_path / "out.parquet"
    assert score(tmp_path / "in", short, "--out", out, bundle=student_bundle) == 0
    rows = by_path(out)
    errors = {Path(p).name: r["error_code"] for p, r in rows.items() if r["error_code"]}
    assert errors == {"corrupt.flac": "unsupported_audio", "empty.wav": "empty_audio",
                      "text.mp3": "unsupported_audio", "cut.wav": "truncated_audio"}
    for p in good:
        r = rows[str(p)]
        assert r["error_code"] is None and r["label"] in student_bundle.labels
        assert abs(sum(r[f"prob_{n}"] for n in student_bundle.labels) - 1) < 1e-3
        assert r["model"] == f"tiny-student/{student_bundle.version}/float32" and r["duration_s"] == 1.5
    assert all(r["label"] is None and r["error_message"] for r in rows.values() if r["error_code"])
    assert "notes.txt" not in {Path(p).name for p in rows}


def test_a_missing_file_in_a_manifest_is_an_error_row_and_columns_are_carried(tmp_path, student_bundle):
    clips(tmp_path / "audio", 2)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label,speaker,take\naudio/clip0000.wav,angry,s1,1\naudio/clip0001.wav,sad,s2,2\n"
                        "audio/gone.wav,happy,s3,3\n")
    out = tmp_path / "out.parquet"
    assert score(manifest, "--out", out, bundle=student_bundle) == 0
    table = pq.read_table(out)
    assert table.schema.field("take").type == pa.int64()   # the manifest's types are kept
    rows = {r["path"]: r for r in table.to_pylist()}
    assert set(rows) == {"audio/clip0000.wav", "audio/clip0001.wav", "audio/gone.wav"}   # as the manifest says
    assert rows["audio/clip0000.wav"]["manifest_label"] == "angry" and rows["audio/clip0001.wav"]["speaker"] == "s2"
    assert rows["audio/gone.wav"]["error_code"] == "unreadable_file" and rows["audio/gone.wav"]["take"] == 3

    pq.write_table(pa.table({"path": [str(tmp_path / "audio" / "clip0000.wav")], "group": ["g"]}),
                   tmp_path / "m.parquet")
    assert score(tmp_path / "m.parquet", "--out", tmp_path / "p.parquet", bundle=student_bundle) == 0
    [row] = pq.read_table(tmp_path / "p.parquet").to_pylist()
    assert row["group"] == "g" and row["label"] == rows["audio/clip0000.wav"]["label"]


def test_csv_and_jsonl_hold_the_same_rows_as_parquet(tmp_path, student_bundle):
    clips(tmp_path / "in", 3)
    (tmp_path / "in" / "empty.wav").write_bytes(b"")
    for name in ("a.parquet", "a.csv", "a.jsonl"):
        assert score(tmp_path / "in", "--out", tmp_path / name, "--segments", bundle=student_bundle) == 0
    want = by_path(tmp_path / "a.parquet")
    lines = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert {r["path"]: r for r in lines} == want
    with open(tmp_path / "a.csv", newline="") as f:
        got = {r["path"]: r for r in csv.DictReader(f)}
    assert set(got) == set(want)
    for p, r in want.items():
        assert got[p]["error_code"] == (r["error_code"] or "")
        if r["label"]:
            assert float(got[p]["prob_sad"]) == r["prob_sad"] and json.loads(got[p]["segments"]) == r["segments"]


def test_out_names_a_dataset_folder_and_rows_name_absolute_paths(tmp_path, student_bundle, monkeypatch, capsys):
    clips(tmp_path / "in", 2)
    monkeypatch.chdir(tmp_path)   # inputs named relative to it
    student = ["--student", str(student_bundle.path)]
    assert main(["score", "in", "--out", "scores", *student]) == 0
    assert len(list((tmp_path / "scores").glob("part-*.parquet"))) == 1
    assert sorted(by_path(tmp_path / "scores")) == [str(tmp_path / "in" / f"clip000{i}.wav") for i in range(2)]
    assert "folder of Parquet part files" not in capsys.readouterr().err
    assert main(["score", "in", "--out", "s.parquet", *student]) == 0
    assert "--out s.parquet is a folder of Parquet part files (a dataset), not one file" in capsys.readouterr().err
    assert main(["score", "in", "--out", "s.txt", *student]) == 2
    assert "name a folder (a Parquet dataset), or a .csv or .jsonl file" in capsys.readouterr().err


def test_globs_and_uris(tmp_path, student_bundle):
    paths = clips(tmp_path / "in", 3)
    assert score(str(tmp_path / "in" / "clip000[01].wav"), f"file://{paths[2]}", "--out", tmp_path / "o.jsonl",
                 bundle=student_bundle) == 0
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert sorted(r["path"] for r in rows) == sorted([str(paths[0]), str(paths[1]), f"file://{paths[2]}"])
    assert all(r["error_code"] is None for r in rows)


def test_an_existing_out_needs_resume_and_the_same_columns(tmp_path, student_bundle, capsys):
    clips(tmp_path / "in", 2)
    out = tmp_path / "o.parquet"
    assert score(tmp_path / "in", "--out", out, bundle=student_bundle) == 0
    assert score(tmp_path / "in", "--out", out, bundle=student_bundle) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert score(tmp_path / "in", "--out", out, "--segments", "--resume", bundle=student_bundle) == 2
    assert "not this run's" in capsys.readouterr().err
    assert score(tmp_path / "in", "--out", out, "--resume", bundle=student_bundle) == 0
    assert len(by_path(out)) == 2
    assert score(tmp_path / "nothing-here", "--out", tmp_path / "x.csv", bundle=student_bundle) == 2
    assert "no such file or folder" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["student", "auto"])
def test_agrees_with_predict_on_every_probability(tmp_path, model, unsure_student_bundle, teacher_bundle):
    """The same files through `ser score` and through the real server's /predict."""
    if model == "student" and SHIPPED_STUDENT.is_dir():
        student, teacher = load_bundle(SHIPPED_STUDENT), None
    else:   # auto with a student that is always unsure: every answer is the teacher's
        student, teacher = unsure_student_bundle, teacher_bundle
    files = clips(tmp_path / "gen", 2, seconds=4.2)
    files += sorted(RAVDESS_DIR.glob("Actor_02/*.flac"))[:6] if RAVDESS_DIR.is_dir() else []
    (tmp_path / "gen" / "empty.wav").write_bytes(b"")
    files.append(tmp_path / "gen" / "empty.wav")
    out = tmp_path / "o.jsonl"
    teacher_args = ["--teacher", teacher.path] if teacher else []
    assert score(*files, "--out", out, "--model", model, "--segments", *teacher_args, bundle=student) == 0
    rows = {r["path"]: r for r in map(json.loads, out.read_text().splitlines())}
    with running_server(student, teacher) as (base, _):
        for f in files:
            r = httpx.post(f"{base}/predict", params={"model": model, "segments": "true"},
                           files={"file": (f.name, f.read_bytes())}, timeout=30)
            row = rows[os.path.abspath(f)]   # rows name files by absolute path
            if r.status_code != 200:
                assert row["error_code"] == r.json()["error"]["code"] and row["label"] is None
                continue
            p = r.json()
            assert row["label"] == p["label"] and row["duration_s"] == p["duration_s"]
            assert row["model"] == "/".join(p["model"][k] for k in ("name", "version", "precision"))
            for name, prob in p["probabilities"].items():
                assert abs(row[f"prob_{name}"] - prob) <= 1e-4
            assert [s["label"] for s in row["segments"]] == [s["label"] for s in p["segments"]]
    assert any(r["error_code"] == "empty_audio" for r in rows.values())


def test_ctrl_c_stops_cleanly_and_resume_finishes(tmp_path, student_bundle):
    inputs = clips(tmp_path / "in", 150, seconds=4.0)
    out = tmp_path / "o.jsonl"
    cmd = ser_score(tmp_path / "in", "--out", out, "--student", student_bundle.path, "--workers", "1",
                    "--row-group", "4")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for(lambda: out.exists() and out.stat().st_size > 0, proc)
    os.killpg(proc.pid, signal.SIGINT)   # as a terminal sends it: to the whole group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    written = [json.loads(line)["path"] for line in out.read_text().splitlines()]
    assert 0 < len(written) < len(inputs)
    subprocess.run(cmd + ["--resume", "--quiet"], check=True, timeout=300)
    final = [json.loads(line)["path"] for line in out.read_text().splitlines()]
    assert sorted(final) == sorted(map(str, inputs))


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_kill_9_then_resume_scores_every_input_exactly_once(tmp_path, student_bundle, fmt):
    inputs = clips(tmp_path / "in", 150, seconds=4.0)
    out = tmp_path / f"o.{fmt}"
    cmd = ser_score(tmp_path / "in", "--out", out, "--student", student_bundle.path, "--workers", "2",
                    "--row-group", "4", "--quiet")
    proc = subprocess.Popen(cmd, start_new_session=True)
    if fmt == "parquet":
        wait_for(lambda: out.is_dir() and len(list(out.glob("part-*.parquet"))) >= 2, proc)
    else:
        wait_for(lambda: out.exists() and out.read_text().count("\n") >= 8, proc)
    os.killpg(proc.pid, signal.SIGKILL)   # the parent and its workers, mid-run
    proc.wait(10)
    written = len(read_paths(out, fmt))
    assert 8 <= written < len(inputs)
    subprocess.run(cmd + ["--resume"], check=True, timeout=300)
    final = read_paths(out, fmt)
    assert len(final) == len(set(final)) and sorted(final) == sorted(map(str, inputs))


def read_paths(out: Path, fmt: str) -> list[str]:
    if fmt == "parquet":
        return pq.read_table(out)["path"].to_pylist()
    return [json.loads(line)["path"] for line in out.read_text().splitlines()]


def test_a_line_cut_short_is_dropped_on_resume(tmp_path, student_bundle):
    clips(tmp_path / "in", 3)
    out = tmp_path / "o.jsonl"
    assert score(tmp_path / "in", "--out", out, bundle=student_bundle) == 0
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:2]) + lines[2][:40])   # what a kill during the last write leaves
    assert score(tmp_path / "in", "--out", out, "--resume", bundle=student_bundle) == 0
    assert sorted(json.loads(line)["path"] for line in out.read_text().splitlines()) == \
        sorted(json.loads(line)["path"] for line in lines)


def wait_for(condition, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert proc.poll() is None, "ser score ended before the test could interrupt it"
        assert time.monotonic() < deadline, "ser score wrote nothing in time"
        time.sleep(0.02)


def test_the_progress_line_counts_rate_and_time_left():
    stream = io.StringIO()
    p = Progress(200, stream=stream)
    p.start -= 10   # ten seconds in, and as long since the last line
    p.shown -= 10
    p.add(50, 2)
    line = p.line()
    assert line.startswith("50/200 files (25%), 5.0 files/s, 2 errors, 0:10 elapsed, 0:30 left"), line
    assert stream.getvalue() == line + "\n"   # not a terminal: whole lines
    Progress(10, quiet=True, stream=stream).add(10, 0)
    assert stream.getvalue().count("\n") == 1


def test_labels_and_a_file_without_speech(tmp_path, student_bundle, capsys):
    [talk] = clips(tmp_path / "in", 1)
    sf.write(tmp_path / "in" / "quiet.wav", np.zeros(3 * 16_000, np.float32), 16_000)
    out = tmp_path / "out.parquet"
    assert score(tmp_path / "in", "--out", out, "--labels", "sad,angry", bundle=student_bundle) == 0
    rows = by_path(out)
    assert {c for c in pq.read_table(out).column_names if c.startswith("prob_")} == {"prob_angry", "prob_sad"}
    quiet, heard = rows[str(tmp_path / "in" / "quiet.wav")], rows[str(talk)]
    assert quiet["no_speech"] is True and quiet["label"] is None and quiet["prob_angry"] is None
    assert quiet["speech_share"] == 0 and quiet["error_code"] is None
    assert heard["no_speech"] is False and heard["label"] in ("angry", "sad")
    assert heard["prob_angry"] + heard["prob_sad"] == pytest.approx(1, abs=1e-3)
    capsys.readouterr()
    assert score(tmp_path / "in", "--out", tmp_path / "bad.parquet", "--labels", "angry,bogus", bundle=student_bundle) == 2
    assert "valid labels: angry, disgust" in capsys.readouterr().err
