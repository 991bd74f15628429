"""What libsndfile is given at all: only the advertised formats, told apart by their first
bytes, and only files whose decoding work is bounded before a sample is decoded."""

from __future__ import annotations

import functools
import io
import time

import pytest
import soundfile as sf

from service.audio import AudioError, load_audio
from devtools.audio import encode, silence_file, voice
from tests.support.client import client_for

ADVERTISED = {"WAV", "FLAC", "OGG", "MP3"}
# Every other format libsndfile writes here (RAW has no header; SD2 needs a resource fork).
OTHER_FORMATS = sorted(set(sf.available_formats()) - ADVERTISED - {"RAW", "SD2", "WAVEX"})
MAX_REFUSAL_CPU_S = 0.05


def other_format(fmt: str) -> bytes:
    return encode(voice(1.0), 16_000, fmt)


def id3_tag(body: bytes = b"", padding: int = 0) -> bytes:
    size = len(body) + padding
    syncsafe = bytes((size >> s) & 0x7F for s in (21, 14, 7, 0))
    return b"ID3\x04\x00\x00" + syncsafe + body + b"\0" * padding


def refusal(data: bytes, **kw) -> tuple[AudioError, float]:
    """The error load_audio raises for `data`, and the CPU time it took to raise it."""
    t0 = time.thread_time()
    with pytest.raises(AudioError) as e:
        load_audio(data, **kw)
    return e.value, time.thread_time() - t0


def test_every_format_beyond_the_advertised_ones_is_known_to_libsndfile():
    """The threat is real: libsndfile would parse and decode each of them."""
    assert len(OTHER_FORMATS) >= 18, OTHER_FORMATS
    for fmt in OTHER_FORMATS:
        x, _ = sf.read(io.BytesIO(other_format(fmt)))
        assert len(x) > 0, fmt


@pytest.mark.parametrize("fmt", OTHER_FORMATS)
def test_other_formats_are_refused_by_their_first_bytes(fmt):
    error, _ = refusal(other_format(fmt))
    assert error.code == "unsupported_audio" and "WAV, FLAC, OGG/Vorbis, OGG/Opus, MP3" in error.message


def test_a_format_hidden_behind_an_id3_tag_is_refused():
    aiff = id3_tag(padding=20) + other_format("AIFF")
    assert sf.SoundFile(io.BytesIO(aiff)).format == "AIFF"   # libsndfile skips the tag and parses AIFF
    assert refusal(aiff)[0].code == "unsupported_audio"


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("WAVEX", "PCM_24"), ("FLAC", "PCM_16"),
                                         ("OGG", "VORBIS"), ("OGG", "OPUS"), ("MP3", "MPEG_LAYER_III")])
def test_the_advertised_formats_still_decode(fmt, subtype):
    assert len(load_audio(encode(voice(1.0, 16_000), 16_000, fmt, subtype))) == 16_000


def test_an_mp3_behind_an_id3_tag_with_padding_still_decodes():
    mp3 = encode(voice(1.0, 16_000), 16_000, "MP3", "MPEG_LAYER_III")
    assert abs(len(load_audio(id3_tag(b"TIT2\x00\x00\x00\x05\x00\x00\x03abcd", padding=64) + mp3)) - 16_000) < 1_200


def test_an_upload_of_another_format_answers_415(student_bundle):
    with client_for(student_bundle) as c:
        for fmt in ("AIFF", "AU", "CAF", "W64", "RF64", "VOC"):
            r = c.post("/predict", content=other_format(fmt), headers={"content-type": "audio/wav"})
            assert (r.status_code, r.json()["error"]["code"]) == (415, "unsupported_audio"), (fmt, r.text)


@functools.cache
def costly(seconds: float, sr: int, channels: int, subtype: str) -> bytes:
    return silence_file(seconds, sr, channels, "OGG", subtype)


@pytest.mark.parametrize("seconds,sr,channels,subtype,status", [
    (10, 192_000, 8, "VORBIS", "audio_too_long"),       # as much to decode as 160 s of 48 kHz stereo
    (2, 192_000, 32, "VORBIS", "unsupported_audio"),    # more channels than MAX_CHANNELS
    (2, 48_000, 32, "OPUS", "unsupported_audio"),
])
def test_files_costly_to_decode_are_refused_from_their_header(seconds, sr, channels, subtype, status):
    error, cpu_s = refusal(costly(seconds, sr, channels, subtype), max_duration_s=60)
    assert error.code == status, error.message
    assert cpu_s < MAX_REFUSAL_CPU_S


def test_a_decode_cost_limit_scales_with_the_duration_limit():
    data = costly(10, 192_000, 8, "VORBIS")
    assert refusal(data, max_duration_s=60)[0].code == "audio_too_long"
    assert len(load_audio(data, max_duration_s=200)) == 10 * 16_000   # a server that allows longer clips


@pytest.mark.slow
@pytest.mark.parametrize("sr,channels,subtype", [(192_000, 32, "VORBIS"), (48_000, 32, "OPUS"), (192_000, 8, "VORBIS")])
def test_a_batch_of_minute_long_costly_files_is_refused_at_once(student_bundle, sr, channels, subtype):
    """A minute each (72 kB of Vorbis at 192 kHz x 32 channels cost 3 s of CPU to decode
    whole): 16 of them in one batch are refused in well under a second."""
    data = costly(60, sr, channels, subtype)
    assert refusal(data, max_duration_s=60)[1] < MAX_REFUSAL_CPU_S
    with client_for(student_bundle) as c:
        t0 = time.process_time()   # every thread's CPU: the app decodes in worker threads
        r = c.post("/predict/batch", files=[("files", (f"{i}.ogg", data, "audio/ogg")) for i in range(16)])
        cpu_s = time.process_time() - t0
    codes = {item["error"]["code"] for item in r.json()["results"]}
    assert r.status_code == 200 and codes <= {"audio_too_long", "unsupported_audio"}, r.text
    assert cpu_s < 1.0   # with the parsing of the upload and the answer
