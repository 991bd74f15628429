"""The shared front end on generated audio in every format, and on real RAVDESS audio."""

from __future__ import annotations

import json
import struct
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from service.audio import SAMPLE_RATE, AudioError, Windowing, load_audio, open_audio, trim_bounds, windows_for
from service.inference import MAX_BATCH, OnnxModel
from service.pcm_wav import PcmWav
from devtools.audio import encode, voice

FORMATS = [("WAV", "PCM_U8"), ("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "FLOAT"),
           ("FLAC", "PCM_16"), ("FLAC", "PCM_24"), ("OGG", "VORBIS"), ("OGG", "OPUS"), ("MP3", "MPEG_LAYER_III")]


CASES = [(fmt, sub, sr, ch) for fmt, sub in FORMATS for sr in (8_000, 16_000, 44_100, 48_000) for ch in (1, 2)
         if not (sub == "OPUS" and sr == 44_100)]   # Opus itself runs only at 8/12/16/24/48 kHz


@pytest.mark.parametrize("fmt,subtype,sr,channels", CASES)
def test_decodes_every_format_rate_and_layout_to_16k_mono(fmt, subtype, sr, channels):
    x = voice(1.0, sr, channels)
    out = load_audio(encode(x, sr, fmt, subtype))
    assert out.dtype == np.float32 and out.ndim == 1
    # Lossy codecs add encoder delay/padding; the duration stays within 60 ms.
    assert abs(len(out) / SAMPLE_RATE - 1.0) < 0.06
    ref = x.mean(axis=1) if channels > 1 else x
    assert np.sqrt(np.mean(out ** 2)) == pytest.approx(np.sqrt(np.mean(ref ** 2)), rel=0.1)


def test_resampling_keeps_the_pitch():
    sr, f = 44_100, 440.0
    t = np.arange(sr) / sr
    out = load_audio(encode((0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32), sr, "WAV", "FLOAT"))
    spectrum = np.abs(np.fft.rfft(out))
    assert np.fft.rfftfreq(len(out), 1 / SAMPLE_RATE)[spectrum.argmax()] == pytest.approx(f, abs=2)


def test_real_ravdess_clip(ravdess_clip):
    x = load_audio(ravdess_clip)
    info = sf.info(ravdess_clip)
    assert len(x) == info.frames and info.samplerate == SAMPLE_RATE
    start, end = trim_bounds(x)
    # RAVDESS clips open with about a second of silence before speech.
    assert 0.3 < start / SAMPLE_RATE < 2.0 and end > start


@pytest.mark.parametrize("data,code", [
    (b"", "empty_audio"),
    (b"this is plain text, not audio" * 10, "unsupported_audio"),
    (bytes(range(256)) * 40, "unsupported_audio"),
])
def test_bad_bytes_get_stable_codes(data, code):
    with pytest.raises(AudioError) as e:
        load_audio(data)
    assert e.value.code == code and "BytesIO" not in e.value.message


def test_truncated_wav_is_rejected():
    data = encode(voice(1.0), 16_000, "WAV", "PCM_16")
    with pytest.raises(AudioError) as e:
        load_audio(data[: len(data) // 2])
    assert e.value.code == "truncated_audio" and "truncated" in e.value.message


def test_truncated_header_is_rejected():
    with pytest.raises(AudioError) as e:
        load_audio(encode(voice(1.0), 16_000, "WAV", "PCM_16")[:30])
    assert e.value.code in ("truncated_audio", "unsupported_audio")


def test_streamed_wav_with_unknown_size_is_accepted():
    data = bytearray(encode(voice(1.0), 16_000, "WAV", "PCM_16"))
    pos = data.index(b"data")
    data[pos + 4:pos + 8] = struct.pack("<I", 0xFFFFFFFF)   # size never filled in by a streaming writer
    assert len(load_audio(bytes(data))) > 0


def test_duration_limits():
    with pytest.raises(AudioError) as e:
        load_audio(encode(voice(0.05), 16_000, "WAV", "PCM_16"))
    assert e.value.code == "audio_too_short"
    with pytest.raises(AudioError) as e:
        load_audio(encode(voice(3.0), 16_000, "WAV", "PCM_16"), max_duration_s=2.0)
    assert e.value.code == "audio_too_long" and "2 s" in e.value.message


def test_non_finite_samples_are_rejected():
    x = voice(0.5)
    x[100] = np.nan
    with pytest.raises(AudioError) as e:
        load_audio(encode(x, 16_000, "WAV", "FLOAT"))
    assert e.value.code == "invalid_audio"


@pytest.mark.parametrize("seconds,hop,expected", [
    (0.5, 0.5, 1), (1.0, 0.5, 1), (1.2, 0.5, 2), (2.0, 0.5, 3), (10.0, 0.5, 19),
    (1.3, 1.0, 1),   # a 0.3 s tail is less than half a window: dropped
    (1.6, 1.0, 2),   # a 0.6 s tail is kept, zero-padded
])
def test_windowing(seconds, hop, expected):
    x = np.ones(round(seconds * SAMPLE_RATE), dtype=np.float32)
    w, starts = Windowing(window_s=1.0, hop_s=hop).windows(x)
    assert w.shape == (expected, SAMPLE_RATE)
    assert np.allclose(starts, np.arange(expected) * hop)
    assert w[-1].sum() == pytest.approx(min(1.0, seconds - starts[-1]) * SAMPLE_RATE)


def test_windows_report_times_in_the_untrimmed_clip():
    x = np.concatenate([np.zeros(SAMPLE_RATE, np.float32), voice(1.0), np.zeros(SAMPLE_RATE, np.float32)])
    _, starts = Windowing(1.0, 0.5, trim_silence=True).windows(x)
    assert starts[0] == pytest.approx(1.0, abs=0.03)
    _, starts = Windowing(1.0, 0.5, trim_silence=False).windows(x)
    assert starts[0] == 0.0


def test_windowing_round_trips_through_json_and_reads_old_bundles():
    w = Windowing(6.0, 3.0, trim_silence=True, pad="none")
    assert Windowing.from_json(json.loads(json.dumps(w.to_json()))) == w
    assert w.to_json() == {"window_s": 6.0, "hop_s": 3.0, "trim_silence": True, "pad": "none"}   # bundle.json's keys
    assert Windowing.from_json({"window_s": 3.0, "hop_s": 1.0, "name": "old"}) == Windowing(3.0, 1.0, False, "zero")
    for bad, named in (({"hop_s": 7.0}, "hop_s"), ({"hop_s": 0}, "hop_s"), ({"pad": "mirror"}, "pad")):
        with pytest.raises(ValueError, match=named):
            Windowing.from_json({**w.to_json(), **bad})


def test_the_reference_signature_cuts_as_the_windowing_does():
    """benchmarks/naive_server.py (a fixed reference) calls windows_for(x, 3.0, 1.0, trim=True)."""
    x = np.concatenate([np.zeros(SAMPLE_RATE, np.float32), voice(5.0)])
    for old, new in zip(windows_for(x, 3.0, 1.0, trim=True), Windowing(3.0, 1.0, trim_silence=True).windows(x)):
        np.testing.assert_array_equal(old, new)


def test_repeat_padding_fills_short_clips_with_the_clip_itself():
    x = np.arange(1, 6, dtype=np.float32)
    w, _ = Windowing(window_s=12 / SAMPLE_RATE, hop_s=6 / SAMPLE_RATE, pad="repeat").windows(x)
    assert w.tolist() == [[1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2]]
    w, _ = Windowing(window_s=12 / SAMPLE_RATE, hop_s=6 / SAMPLE_RATE).windows(x)
    assert w[0, 5:].tolist() == [0] * 7


def test_windows_in_batches_are_the_windows_at_once():
    x = voice(7.3)
    windowing = Windowing(1.0, 0.25, trim_silence=True, pad="repeat")
    whole, starts = windowing.windows(x)
    parts = list(windowing.batches(x, batch=5))
    assert [len(w) for w, _ in parts] == [5] * (len(whole) // 5) + ([len(whole) % 5] if len(whole) % 5 else [])
    np.testing.assert_array_equal(np.concatenate([w for w, _ in parts]), whole)
    np.testing.assert_array_equal(np.concatenate([s for _, s in parts]), starts)


def test_a_long_clip_is_classified_in_memory_bounded_by_the_audio(student_bundle):
    """Windows are built and run a batch at a time: beyond the audio itself (and one
    audio-sized pass of the silence trim), peak memory is a few batches of windows, whatever
    the clip's length. All windows at once would be 1199 x 64 kB = 77 MB for 10 minutes."""
    model = OnnxModel(student_bundle)
    batch_bytes = MAX_BATCH * student_bundle.windowing.samples * 4
    for seconds in (60, 600):
        audio = np.resize(voice(7.0), seconds * SAMPLE_RATE)
        tracemalloc.start()
        model.predict(audio)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < audio.nbytes + 4 * batch_bytes, (seconds, peak / 1e6)


def with_list_chunk(wav: bytes) -> bytes:
    """The same WAV with a LIST chunk (odd-sized, so padded) between the header and `data`."""
    info = b"INFOISFT\x05\x00\x00\x00test\x00"
    list_chunk = b"LIST" + struct.pack("<I", len(info)) + info + b"\x00"
    body = wav[12:36] + list_chunk + wav[36:]
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


@pytest.mark.parametrize("sr,channels,seconds", [(16_000, 1, 3.0), (8_000, 1, 1.3), (44_100, 2, 2.0),
                                                 (48_000, 6, 1.0), (22_050, 1, 40.0)])
def test_16_bit_wav_uploads_decode_bit_for_bit_as_libsndfile_does(tmp_path, sr, channels, seconds):
    wav = encode(voice(seconds, sr, channels), sr, "WAV", "PCM_16")
    for data in (wav, with_list_chunk(wav), wav + b"\x01"):   # the last: a stray byte after the data chunk
        with open_audio(data) as f:
            assert isinstance(f, PcmWav)   # numpy decodes it
        path = tmp_path / "clip.wav"
        path.write_bytes(data)
        np.testing.assert_array_equal(load_audio(data, max_duration_s=60), load_audio(path, max_duration_s=60))


def test_other_wavs_still_go_to_libsndfile():
    for subtype in ("PCM_U8", "PCM_24", "FLOAT", "ULAW"):
        with open_audio(encode(voice(1.0), 16_000, "WAV", subtype)) as f:
            assert not isinstance(f, PcmWav), subtype
    with open_audio(encode(voice(1.0), 16_000, "WAVEX", "PCM_16")) as f:
        assert not isinstance(f, PcmWav)
