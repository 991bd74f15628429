"""Property-based fuzzing of the audio decoder and the upload path (bounded in examples and time).

Whatever the bytes, the front end returns finite 16 kHz mono float32 or raises AudioError with
a documented code; whatever the request, the API answers < 500 in the JSON error shape.
`python -m tests.support.fuzz` runs the same properties far longer, outside the test suite.
"""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.app import create_app
from service.audio import AudioError, load_audio
from service.errors import ERRORS
from service.settings import Settings
from devtools.audio import wav_header
from tests.support.fuzz import SEEDS

# The suite's budget; tests/support/fuzz.py raises it with SER_FUZZ_EXAMPLES.
EXAMPLES = int(os.environ.get("SER_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                             HealthCheck.function_scoped_fixture])


def check_decoder(data: bytes) -> None:
    try:
        x = load_audio(data, max_duration_s=60)
    except AudioError as e:
        assert e.code in ERRORS and ERRORS[e.code].kinds == ("clip",) and e.message
        return
    assert x.dtype == np.float32 and x.ndim == 1 and 0 < len(x) <= 60 * 16_000 + 16_000
    assert np.isfinite(x).all()


@st.composite
def mutated(draw) -> bytes:
    """A valid file of some format with bytes overwritten, cut, duplicated or spliced in."""
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 6))):
        op, pos = draw(st.sampled_from(["set", "cut", "dup", "insert"])), draw(st.integers(0, len(data) - 1))
        if op == "set":
            data[pos:pos + 4] = draw(st.binary(min_size=1, max_size=4))
        elif op == "cut":
            del data[pos:pos + draw(st.integers(1, 4096))]
        elif op == "dup":
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 4096))]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        if not data:
            break
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_files_decode_or_fail_with_a_stable_code(data):
    check_decoder(data)


@FUZZ
@given(st.binary(max_size=4096), st.sampled_from([b"", b"RIFF\x00\x00\x00\x00WAVE", b"fLaC", b"OggS", b"ID3\x03"]))
def test_arbitrary_bytes_decode_or_fail_with_a_stable_code(tail, magic):
    check_decoder(magic + tail)


@FUZZ
@given(sr=st.integers(0, 2**32 - 1), channels=st.integers(0, 2**16 - 1), bits=st.sampled_from([0, 1, 7, 8, 16, 24, 32, 64]),
       fmt_code=st.sampled_from([0, 1, 3, 6, 7, 0xFFFE, 0x1234]), data_size=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
       data=st.binary(max_size=2048))
def test_wav_headers_that_lie_decode_or_fail_with_a_stable_code(sr, channels, bits, fmt_code, data_size, data):
    try:
        header = wav_header(sr, channels, bits, data_size, data, fmt_code)
    except struct.error:
        return   # byte rate or block align does not fit its header field
    check_decoder(header)


@pytest.fixture(scope="module")
def client(student_bundle):
    s = Settings(student_bundle=student_bundle.path, teacher_bundle=None, max_upload_bytes=200_000)
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        yield c


def assert_designed(r) -> None:
    assert r.status_code < 500 or r.json()["error"]["code"] in ("overloaded", "teacher_unavailable"), r.text
    if r.status_code >= 400:
        body = r.json()
        assert set(body) == {"error"} and body["error"]["code"] and body["error"]["message"]


@FUZZ
@given(ctype=st.one_of(st.sampled_from(["audio/wav", "audio/flac", "application/octet-stream", "multipart/form-data",
                                        "multipart/form-data; boundary=", "multipart/form-data; boundary=x", "text/plain", ""]),
                       st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)),
       body=st.one_of(st.binary(max_size=2048), mutated()))
def test_raw_uploads_get_a_designed_answer(client, ctype, body):
    r = client.post("/predict?model=student", content=body, headers={"content-type": ctype})
    assert_designed(r)


@FUZZ
@given(field=st.sampled_from(["file", "files", "audio", ""]), filename=st.text(max_size=40),
       part_type=st.sampled_from(["audio/wav", "text/plain", "", "application/json"]),
       data=st.one_of(st.just(SEEDS["wav16"]), mutated(), st.binary(max_size=512)),
       route=st.sampled_from(["/predict?model=student", "/predict/batch?model=student", "/predict/teacher"]),
       copies=st.integers(1, 3))
def test_multipart_uploads_get_a_designed_answer(client, field, filename, part_type, data, route, copies):
    files = [(field, (filename, data, part_type))] * copies
    r = client.post(route, files=files)
    assert_designed(r)
