"""What a browser gets: CORS headers on every answer (early refusals too) and a web page that
runs only its own files and cannot be framed. tests/service/test_web_page.py drives the page
in a real Chromium under this policy."""

from __future__ import annotations

import re

import pytest

from devtools.audio import wav_bytes
from tests.support.client import client_for

ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def cors_client(student_bundle):
    with client_for(student_bundle, cors_origins=[ORIGIN], max_upload_bytes=50_000) as c:
        yield c


def test_an_upload_refused_before_routing_still_carries_cors_headers(cors_client):
    r = cors_client.post("/predict", content=b"\0" * 60_000, headers={"Origin": ORIGIN, "content-type": "audio/wav"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_large"
    assert r.headers["access-control-allow-origin"] == ORIGIN


def test_a_page_on_an_allowed_origin_can_read_retry_after_and_the_request_id(cors_client):
    r = cors_client.post("/predict", files={"file": ("a.wav", wav_bytes(), "audio/wav")}, headers={"Origin": ORIGIN})
    assert r.status_code == 200
    exposed = {h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")}
    assert {"retry-after", "x-request-id"} <= exposed
    other = cors_client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_the_page_is_served_locked_down(student_bundle):
    with client_for(student_bundle) as c:
        page = c.get("/")
        assets = re.findall(r'<(?:script|link)[^>]* (?:src|href)="(static/[^"]+)"', page.text)
        # the AudioWorklet module is loaded by live.js, not by the markup
        answers = [page, *(c.get(f"/{a}") for a in [*assets, "static/pcm-worklet.js"])]
        assert c.get("/static/openapi-examples.json").status_code == 404   # only the page's own files
    assert sorted(assets) == ["static/live.css", "static/live.js", "static/page.css", "static/page.js"]
    # No inline script or style for the policy to allow, and no inline event handlers.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>|<style|\son[a-z]+=", page.text)
    for r in answers:
        assert r.status_code == 200
        policy = dict(d.strip().split(" ", 1) for d in r.headers.get("content-security-policy", "x y").split(";"))
        assert policy.get("script-src") == "'self'" and policy.get("style-src") == "'self'", policy
        assert policy.get("connect-src") == "'self'" and policy.get("frame-ancestors") == "'none'", policy
        assert policy.get("default-src") == "'self'" and policy.get("object-src") == "'none'", policy
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"
