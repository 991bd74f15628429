"""The request path stays lean: what /predict costs beyond decoding and the model."""

from __future__ import annotations

import numpy as np
import pytest
import starlette.concurrency

from service.audio import fill
from devtools.audio import wav_bytes
from tests.support.client import client_for


def test_a_prediction_takes_one_trip_to_a_worker_thread(student_bundle, monkeypatch):
    """The decode and the model run in a worker thread; nothing else of a request should
    (a plain `def` dependency would cost a thread hop of its own)."""
    hops = []
    real = starlette.concurrency.run_in_threadpool

    async def counting(fn, *args, **kwargs):
        hops.append(getattr(fn, "__name__", repr(fn)))
        return await real(fn, *args, **kwargs)

    for module in ("starlette.concurrency", "fastapi.dependencies.utils", "fastapi.routing", "service.runtime"):
        monkeypatch.setattr(f"{module}.run_in_threadpool", counting, raising=False)
    with client_for(student_bundle, api_key="k" * 32) as c:
        hops.clear()
        r = c.post("/predict", content=wav_bytes(1.0), headers={"content-type": "audio/wav", "x-api-key": "k" * 32})
    assert r.status_code == 200, r.text
    assert hops == ["_answer"], hops


@pytest.mark.parametrize("length", [0, 1, 999, 1000])
def test_zero_fill_is_np_pad(length):
    x = np.random.default_rng(0).standard_normal(length).astype(np.float32)
    np.testing.assert_array_equal(fill(x, 1000), np.pad(x, (0, 1000 - length)).astype(np.float32))
