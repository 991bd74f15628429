"""SER_API_KEY: what keys are accepted, that a bad one is never echoed, and that the OpenAPI
document declares the key only when the server needs one."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.app import create_app
from service.cli import main
from service.settings import Settings
from devtools.audio import wav_bytes

KEY = "a-key-of-thirty-two-characters.."


def settings(student_bundle, **kw) -> Settings:
    return Settings(student_bundle=student_bundle.path, teacher_bundle=None, **kw)


@pytest.mark.parametrize("stored", [KEY + "\n", f"  {KEY}\r\n", f"\t{KEY} "])
def test_a_key_read_from_a_file_matches_what_clients_send(student_bundle, stored, monkeypatch):
    monkeypatch.setenv("SER_API_KEY", stored)   # as `kubectl create secret --from-file` stores it
    with TestClient(create_app(settings(student_bundle))) as c:
        files = {"file": ("a.wav", wav_bytes(), "audio/wav")}
        assert c.post("/predict", files=files, headers={"X-API-Key": KEY}).status_code == 200
        assert c.post("/predict", files=files, headers={"X-API-Key": KEY[:-1]}).status_code == 401


@pytest.mark.parametrize("bad", ["short-key", "ключ-который-никогда-не-совпадёт", "a-key-with-a\x07bell-inside-it"])
def test_an_unusable_key_is_refused_at_start_and_never_echoed(student_bundle, bad, monkeypatch, capsys):
    with pytest.raises(ValidationError) as e:
        settings(student_bundle, api_key=bad)
    assert bad not in str(e.value) and "SER_API_KEY must" in str(e.value)
    monkeypatch.setenv("SER_API_KEY", bad)
    assert main(["serve", "--student", str(student_bundle.path)]) == 2
    err = capsys.readouterr().err
    assert "SER_API_KEY must" in err and bad not in err


def test_the_openapi_document_declares_the_key_only_when_one_is_set(student_bundle):
    keyless = create_app(settings(student_bundle)).openapi()
    keyed = create_app(settings(student_bundle, api_key=KEY)).openapi()
    assert "securitySchemes" not in keyless.get("components", {})
    assert not [op for ops in keyless["paths"].values() for op in ops.values() if "security" in op]
    assert keyed["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    guarded = {path for path, ops in keyed["paths"].items() for op in ops.values() if "security" in op}
    assert guarded == {"/predict", "/predict/teacher", "/predict/batch", "/v2/models/{model_name}/infer"}
