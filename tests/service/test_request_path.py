"""The request path stays lean: what /predict costs beyond decoding and the model."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import numpy as np
import pytest
import starlette.concurrency

from devtools.audio import wav_bytes
from devtools.http import BOUNDARY, form, part
from service.audio import fill
from service.errors import ApiError
from service.runtime import Limiter, Runtime
from service.schemas import PredictResponse
from service.upload import form_parts
from tests.support.client import client_for


def test_a_prediction_takes_one_trip_to_a_worker_thread(student_bundle, monkeypatch):
    """The decode and the model run in one of the limiter's inference threads; nothing else of a
    request leaves the event loop (a plain `def` dependency would cost a hop through starlette's pool)."""
    hops, answered_in = [], []
    real_hop, real_answer = starlette.concurrency.run_in_threadpool, Runtime._answer

    async def counting(fn, *args, **kwargs):
        hops.append(getattr(fn, "__name__", repr(fn)))
        return await real_hop(fn, *args, **kwargs)

    def answer(self, *args):
        answered_in.append(threading.current_thread().name)
        return real_answer(self, *args)

    for module in ("starlette.concurrency", "fastapi.dependencies.utils", "fastapi.routing"):
        monkeypatch.setattr(f"{module}.run_in_threadpool", counting, raising=False)
    monkeypatch.setattr(Runtime, "_answer", answer)
    with client_for(student_bundle, api_key="k" * 32) as c:
        hops.clear()
        r = c.post("/predict", content=wav_bytes(1.0), headers={"content-type": "audio/wav", "x-api-key": "k" * 32})
    assert r.status_code == 200, r.text
    assert hops == [], hops
    assert len(answered_in) == 1 and answered_in[0].startswith("ser-inference"), answered_in


@pytest.mark.parametrize("length", [0, 1, 999, 1000])
def test_zero_fill_is_np_pad(length):
    x = np.random.default_rng(0).standard_normal(length).astype(np.float32)
    np.testing.assert_array_equal(fill(x, 1000), np.pad(x, (0, 1000 - length)).astype(np.float32))


@pytest.mark.parametrize("query", ["model=student", "model=student&segments=true&top_k=6&labels=angry,sad,neutral"])
def test_the_answer_written_without_the_model_is_the_models_json(student_bundle, query):
    """/predict writes its answer straight to JSON, not through PredictResponse: the same fields,
    in the same order, with the values the model would give them."""
    with client_for(student_bundle) as c:
        r = c.post(f"/predict?{query}", files={"file": ("a.wav", wav_bytes(4.5), "audio/wav")})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert list(body) == list(PredictResponse.model_fields)
    assert PredictResponse.model_validate(body).model_dump(mode="json") == body


def test_form_parts_in_form_order_with_text_parts_and_limits():
    body = form(part("note", b"hello", None, ""), part("file", b"RIFF", "a.wav"), part("file", b"\x00\x01", b"\xff.wav")).body
    ctype = f"multipart/form-data; boundary={BOUNDARY}"
    assert form_parts(body, ctype, max_files=2, max_fields=1) == [
        ("note", None, b"hello"), ("file", "a.wav", b"RIFF"), ("file", "\xff.wav", b"\x00\x01")]
    for limits, message in [(dict(max_files=1, max_fields=1), "more than 1 files"),
                            (dict(max_files=2, max_fields=0), "Too many fields")]:
        with pytest.raises(ApiError, match=message) as e:
            form_parts(body, ctype, **limits)
        assert e.value.code == "invalid_request"
    unterminated = form(part("file", b"RIFF", "a.wav"), close=False).body
    assert form_parts(unterminated, ctype, max_files=1, max_fields=1) == []   # as starlette: no complete part
    with pytest.raises(ApiError, match="Missing boundary"):
        form_parts(body, "multipart/form-data", max_files=2, max_fields=1)


def test_a_cancelled_request_keeps_its_slot_until_its_work_is_done():
    async def scenario():
        limiter, release = Limiter(concurrency=1, max_queue=0), threading.Event()
        task = asyncio.create_task(limiter.run(release.wait, 5))
        await asyncio.sleep(0.05)
        task.cancel()   # the client left; its inference cannot be stopped
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert limiter.full()
        release.set()
        for _ in range(200):
            if not limiter.full():
                break
            await asyncio.sleep(0.01)
        assert not limiter.full()
        limiter.close()
        assert await limiter.run(lambda: 7) == 7   # a run after close starts new threads
        limiter.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("query, expected", [
    (b"", {"choice": "auto", "top_k": 3, "segments": False, "labels": None}),
    (b"model=student&top_k=64&segments=1&labels=angry,sad",
     {"choice": "student", "top_k": 64, "segments": True, "labels": "angry,sad"}),
    (b"model=teacher&segments=false", {"choice": "teacher", "top_k": 3, "segments": False, "labels": None}),
])
def test_plain_parameters_are_read_by_the_fast_path(query, expected):
    from service.fast_predict import plain_params

    assert plain_params(query) == expected


@pytest.mark.parametrize("query", [b"model=bogus", b"model=student&model=teacher", b"top_k=0", b"top_k=65",
                                   b"top_k=%2B3", b"top_k=%C2%B2", b"segments=yes", b"labels=", b"other=1",
                                   b"top_k=3.0"])
def test_anything_else_is_left_to_fastapi(query):
    from service.fast_predict import plain_params

    assert plain_params(query) is None


def test_a_non_ascii_digit_is_refused_as_fastapi_refuses_it(student_bundle):
    """'²' is a digit to Python's str.isdigit but not to int(): FastAPI's 422, not a crash."""
    with client_for(student_bundle) as c:
        r = c.post("/predict?top_k=%C2%B2", files={"file": ("a.wav", wav_bytes(1.0), "audio/wav")})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_parameter", r.text


@pytest.mark.parametrize("body", [wav_bytes(2.0), b"", b"not audio at all"])
def test_the_fast_path_answers_as_fastapi_does(student_bundle, monkeypatch, body):
    """The same request through the fast path (plain parameters) and through FastAPI (`segments=yes`,
    which pydantic reads as true and the fast path leaves to FastAPI): the same status, the same
    JSON but the timing, and the same metrics; the fast path really ran for the first one."""
    import service.fast_predict as fast

    ran, real = [], fast.predict_one

    async def spy(*args, **kwargs):
        ran.append(kwargs)
        return await real(*args, **kwargs)

    monkeypatch.setattr(fast, "predict_one", spy)
    with client_for(student_bundle) as c:
        answers = [c.post(f"/predict?model=student&segments={v}", files={"file": ("a.wav", body, "audio/wav")})
                   for v in ("true", "yes")]
        metrics = c.get("/metrics").text
    assert len(ran) == 1 and ran[0]["segments"] is True
    a, b = answers
    assert a.status_code == b.status_code and a.headers["content-type"] == b.headers["content-type"]
    strip = lambda r: {k: v for k, v in r.json().items() if k != "inference_ms"}   # noqa: E731
    assert strip(a) == strip(b)
    assert f'route="/predict",status="{a.status_code}"}} 2.0' in metrics
