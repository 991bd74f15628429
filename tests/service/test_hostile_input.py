"""Hostile and odd input through the real server: decompression bombs with the process's peak
memory measured, and the whole generated corpus of devtools/hostile.py."""

from __future__ import annotations

import httpx
import pytest

from service.audio import AudioError, load_audio
from devtools.audio import encode, voice
from devtools.hostile import bombs, corpus, run_corpus
from devtools.process import peak_rss_mb, reset_peak, rss_mb
from devtools.server import running_server

MB = 1 << 20
UPLOAD_LIMIT, MAX_DURATION_S = 10_000_000, 60
# The documented bound on what one request adds to the server's peak RSS: the upload held
# twice (as received and as one bytes object), 0.5 MB per second of accepted audio (16 kHz
# float32 and its windows), and 32 MB for a batch of windows in flight and allocator slack.
BOUND = 2 * UPLOAD_LIMIT + 0.5 * MB * MAX_DURATION_S + 32 * MB
# What decoding the bombs whole would need: 1 h and 10 min of 48 kHz stereo, 1 h of 8 kHz
# mono, 40 min of 4 kHz, each as float32 (the old front end's first copy, before resampling).
DECODED = {"flac_1h_48k_stereo": 3600 * 48_000 * 2 * 4, "ogg_vorbis_10min_48k_stereo": 600 * 48_000 * 2 * 4,
           "ogg_opus_10min_48k_stereo": 600 * 48_000 * 2 * 4, "mp3_1h_8k": 3600 * 8_000 * 4,
           "wav_u8_4k_40min": 2400 * 4_000 * 4 * 4}   # resampled to 16 kHz


@pytest.fixture(scope="module")
def server(student_bundle, teacher_bundle):
    with running_server(student_bundle, teacher_bundle, settings={"SER_UPLOAD_TIMEOUT_S": "2"}) as (base, proc):
        yield base, proc


@pytest.mark.slow   # building the bombs takes 15-25 s on two cores
def test_every_bomb_is_refused_and_the_peak_memory_stays_bounded(server):
    base, proc = server
    cases = {c.name.removeprefix("bomb_"): c for c in corpus() if c.group == "bomb"}
    for name, decoded in DECODED.items():
        assert decoded > BOUND   # the bomb really is one: decoding it whole breaks the bound
        before = rss_mb(proc.pid) * MB
        reset_peak(proc.pid)
        [r] = run_corpus(base, [cases[name]])
        rise = peak_rss_mb(proc.pid) * MB - before
        assert r.ok and r.code == "audio_too_long", (name, r)
        assert rise < BOUND, f"{name}: peak RSS rose {rise / MB:.0f} MB, bound {BOUND / MB:.0f} MB"
        assert rise < len(bombs()[name]) + 16 * MB   # refused from the header: only the upload is held


def test_the_longest_accepted_clip_stays_within_the_bound(server):
    base, proc = server
    data = encode(voice(59.9, 48_000, 2), 48_000, "FLAC")
    before = rss_mb(proc.pid) * MB
    reset_peak(proc.pid)
    r = httpx.post(f"{base}/predict?segments=true", content=data, headers={"content-type": "audio/flac"}, timeout=60)
    assert r.status_code == 200, r.text
    assert peak_rss_mb(proc.pid) * MB - before < BOUND


@pytest.mark.slow
def test_the_generated_corpus_gets_the_designed_answers(server):
    base, proc = server
    cases = corpus(UPLOAD_LIMIT)
    assert len(cases) >= 60
    first = run_corpus(base, cases)
    wrong = [(r.case.name, r.status, r.code, r.detail) for r in first if not r.ok]
    assert not wrong
    assert all(200 <= r.status < 500 for r in first)
    rss = rss_mb(proc.pid)
    second = run_corpus(base, cases)   # a second pass: nothing leaks per request
    assert all(r.ok for r in second)
    assert rss_mb(proc.pid) - rss < 20
    assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200
    assert httpx.post(f"{base}/predict", files={"file": ("a.wav", encode(voice(2.0), 16_000))}, timeout=30).status_code == 200


def test_a_length_that_passes_the_header_check_is_still_stopped_while_decoding():
    # 60.5 s declared is within the header slack of a 60 s limit: the block decoder stops it.
    data = encode(voice(60.5, 8_000), 8_000, "WAV", "PCM_16")
    with pytest.raises(AudioError) as e:
        load_audio(data, max_duration_s=60)
    assert e.value.code == "audio_too_long" and "more than 60.0 s" in e.value.message


def test_block_decoding_gives_the_same_samples_as_decoding_whole():
    import numpy as np
    import soundfile as sf
    import soxr

    x = voice(9.0, 44_100, 3)   # several 1 MB blocks of a 3-channel 44.1 kHz clip
    whole = soxr.resample(x.mean(axis=1, dtype=np.float32), 44_100, 16_000, quality="HQ")
    out = load_audio(encode(x, 44_100, "WAV", "FLOAT"))
    assert np.array_equal(out, whole)
    assert sf.info(__import__("io").BytesIO(encode(x, 44_100, "WAV", "FLOAT"))).frames * 3 > (1 << 18)
