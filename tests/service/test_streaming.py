"""The transport-free stream core: PCM frames, windows as audio arrives, query parameters."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from service.audio import SAMPLE_RATE, Windowing, load_audio, resampler
from devtools.audio import encode, voice
from service.errors import CLOSE_CODES
from service.streaming import StreamError, StreamParams, Windower, decode_pcm


def pushed_in_chunks(w: Windower, x: np.ndarray, seed: int = 0) -> list:
    rng, out, i = np.random.default_rng(seed), [], 0
    while i < len(x):
        n = int(rng.integers(1, 5000))
        out += w.push(x[i:i + n])
        i += n
    return out + w.finish()


@pytest.mark.parametrize("pad", ["zero", "repeat", "none"])
@pytest.mark.parametrize("seconds", [0.15, 0.7, 1.0, 1.2, 1.7, 2.3, 3.74, 5.0])
def test_windows_of_a_stream_are_the_windows_of_the_clip(seconds, pad):
    x = voice(seconds, seed=1)
    windowing = Windowing(1.0, 0.25, pad=pad)
    expected, starts = windowing.windows(x)
    got = pushed_in_chunks(Windower(SAMPLE_RATE, windowing), x)
    assert [w.start for w in got] == [round(s * SAMPLE_RATE) for s in starts]
    np.testing.assert_array_equal(np.stack([w.samples for w in got]), expected)
    assert got[-1].end == min(len(x), got[-1].start + SAMPLE_RATE)


def test_a_stream_too_short_for_predict_has_no_window():
    w = Windower(SAMPLE_RATE, Windowing(1.0, 0.25))
    assert w.push(voice(0.05)) == [] and w.finish() == [] and w.duration_s == pytest.approx(0.05)


def test_stream_resampling_matches_the_decoder():
    """A 44.1 kHz stream in chunks of any size gives the samples load_audio decodes from the file."""
    x = voice(2.5, sr=44_100, seed=2)
    wav = encode(x, 44_100, "WAV", "PCM_16")
    decoded = load_audio(wav)
    w = Windower(44_100, Windowing(1.0, 0.5))
    pcm = decode_pcm(sf.read(io.BytesIO(wav), dtype="int16")[0].astype("<i2").tobytes(), "pcm_s16le")
    windows = pushed_in_chunks(w, pcm, seed=3)
    assert w.samples == len(decoded)
    expected, _ = Windowing(1.0, 0.5).windows(decoded)
    np.testing.assert_array_equal(np.stack([v.samples for v in windows]), expected)


def test_windower_holds_about_one_window():
    w = Windower(SAMPLE_RATE, Windowing(1.0, 0.5))
    for i in range(100):
        w.push(voice(0.3, seed=i))
    assert w._hi - w._lo <= SAMPLE_RATE and len(w._buf) <= 4 * SAMPLE_RATE and w.duration_s == pytest.approx(30.0)
    big = Windower(SAMPLE_RATE, Windowing(1.0, 0.5))
    assert len(big.push(voice(10.0))) == 19 and len(big._buf) <= 22 * SAMPLE_RATE   # one frame longer than the buffer
    assert resampler(SAMPLE_RATE) is None


def test_decode_pcm():
    np.testing.assert_array_equal(decode_pcm(np.array([-32768, 0, 16384], "<i2").tobytes(), "pcm_s16le"),
                                  np.array([-1.0, 0.0, 0.5], np.float32))
    np.testing.assert_array_equal(decode_pcm(np.array([0.25, -1.5], "<f4").tobytes(), "pcm_f32le"), [0.25, -1.5])
    with pytest.raises(StreamError) as e:
        decode_pcm(b"\x00\x01\x02", "pcm_s16le")
    assert (e.value.code, e.value.close_code) == ("invalid_message", 1003)
    with pytest.raises(StreamError) as e:
        decode_pcm(np.array([0.0, np.nan], "<f4").tobytes(), "pcm_f32le")
    assert (e.value.code, e.value.close_code) == ("invalid_audio", 1007)


@pytest.mark.parametrize("query, problem", [
    ({"sample_rate": "7999"}, "query.sample_rate"), ({"sample_rate": "48001"}, "query.sample_rate"),
    ({"encoding": "mp3"}, "query.encoding"), ({"hop_s": "0.2"}, "query.hop_s"), ({"model": "big"}, "query.model"),
    ({"top_k": "0"}, "query.top_k"), ({"hop_s": "abc"}, "query.hop_s"),
])
def test_bad_parameters(query, problem):
    with pytest.raises(StreamError) as e:
        StreamParams.parse(query)
    assert (e.value.code, e.value.close_code) == ("invalid_parameter", 4400) and problem in e.value.message


def test_parameters_and_hop_bound():
    p = StreamParams.parse({"model": "auto", "sample_rate": "44100", "hop_s": "1.5", "top_k": "6", "other": "x"})
    assert (p.model, p.sample_rate, p.encoding, p.hop_s, p.top_k) == ("auto", 44_100, "pcm_s16le", 1.5, 6)
    p.check_hop(3.0)
    with pytest.raises(StreamError, match="longer than the model's window"):
        p.check_hop(1.0)


def test_the_asyncapi_document_says_what_the_service_does():
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "stream-asyncapi.yaml").read_text())
    assert doc["asyncapi"] == "3.0.0" and doc["channels"]["stream"]["address"] == "/stream"
    error = doc["components"]["messages"]["error"]
    assert error["x-close-codes"] == CLOSE_CODES
    assert error["payload"]["properties"]["code"]["enum"] == sorted(CLOSE_CODES)
    query = doc["channels"]["stream"]["bindings"]["ws"]["query"]["properties"]
    schema = StreamParams.model_json_schema()["properties"]
    assert set(query) == set(schema)
    for name, spec in schema.items():
        for key in ("default", "minimum", "maximum", "enum"):
            assert query[name].get(key) == spec.get(key), (name, key)
    window = doc["components"]["messages"]["window"]["payload"]
    assert window["required"] == list(window["properties"])
    example = doc["components"]["messages"]["window"]["examples"][0]["payload"]
    assert set(example) == set(window["required"])


def test_routes_stay_thin_and_take_statuses_from_the_error_table():
    """The stream route only admits and hands over; no route writes an HTTP status number."""
    import ast

    routes = Path(__file__).resolve().parents[2] / "service" / "routes"
    assert len((routes / "stream.py").read_text().splitlines()) <= 150
    for path in routes.glob("*.py"):
        numbers = [n.value for n in ast.walk(ast.parse(path.read_text()))
                   if isinstance(n, ast.Constant) and type(n.value) is int and 100 <= n.value <= 599]
        assert numbers == [], (path.name, numbers)
    assert all(1000 <= code <= 4999 for code in CLOSE_CODES.values())


def test_the_minimum_rate_counts_only_the_time_spent_waiting_for_the_client():
    from service.stream_session import MinimumRate

    rate = MinimumRate(speed=0.5, window_s=5.0)
    for _ in range(100):   # 0.1 s of audio per 0.1 s waited: real time, however long
        rate.add(0.1, 0.1)
    for _ in range(100):   # the server held the stream back: frames came at once, never too slow
        rate.add(0.01, 0.0)
    with pytest.raises(StreamError) as e:
        for _ in range(3):   # a sample every 3.3 s
            rate.add(1 / 16_000, 3.3)
    assert (e.value.code, e.value.close_code) == ("stream_too_slow", 4408)


@pytest.mark.parametrize("header, name", [("localhost:8000", "localhost"), ("LOCALHOST.", "localhost"),
                                          ("[::1]:8000", "::1"), ("::1", "::1"), ("127.0.0.1", "127.0.0.1"),
                                          ("rebind.example:80", "rebind.example")])
def test_host_names_are_compared_without_port_case_or_final_dot(header, name):
    from service.hosts import host_name

    assert host_name(header) == name
