"""The web page at /, in a real headless Chromium (Playwright) against the real server.
(tests/support/browser.py says what it needs).
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from service.labels import LABELS
from devtools.audio import silence_file, wav_bytes
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, playwright_or_skip
from devtools.data import RAVDESS_CLIP
from devtools.server import running_server

sync_api = playwright_or_skip()


@pytest.fixture(scope="module")
def base_url(student_bundle, teacher_bundle):
    """`ser serve` on a free port, shared by the tests of this module."""
    with running_server(student_bundle, teacher_bundle) as (base, _):
        yield base


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, base_url):
    # reduced motion: the bars are drawn at their final width at once (no CSS transition to wait for)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, reduced_motion="reduce")
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    problems, foreign = [], []
    pg.on("pageerror", lambda e: problems.append(str(e)))
    # The page runs under its Content-Security-Policy: anything it blocks is a bug of the page.
    pg.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    pg.on("request", lambda r: None if r.url.startswith((base_url, "blob:", "data:")) else foreign.append(r.url))
    served = pg.goto(f"{base_url}/")
    assert "script-src 'self';" in served.headers["content-security-policy"]   # the policy is in force
    yield pg
    context.close()
    assert not problems, f"JavaScript errors on the page: {problems}"
    assert not foreign, f"the page loaded outside resources: {foreign}"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    if RAVDESS_CLIP.is_file():
        return RAVDESS_CLIP
    path = tmp_path_factory.mktemp("clip") / "generated.wav"
    path.write_bytes(wav_bytes(3.0))
    return path


def api_predict(base_url: str, path: Path, model: str) -> dict:
    r = httpx.post(f"{base_url}/predict", params={"model": model, "segments": "true", "top_k": 6},
                   files={"file": (path.name, path.read_bytes())}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def assert_percent(shown: str, p: float) -> None:
    """`shown` is `p` as a percentage with one decimal. The API gives p to 4 digits, so 100p can
    end in a 5 exactly, and either neighbour is a correct rounding of it."""
    assert shown.endswith("%") and len(shown.split(".")[-1]) == 2, shown
    assert abs(float(shown[:-1]) - 100 * p) <= 0.05 + 1e-9, (shown, p)


def check_result_shown(page, expected: dict) -> None:
    """The page shows exactly what the API answered for the same file and model."""
    result = page.locator("#result")
    sync_api.expect(result).to_be_visible()
    label = page.locator("#result-label").inner_text().strip().lower()
    assert label in LABELS and label == expected["label"]
    assert_percent(page.locator("#result-confidence").inner_text(), expected["confidence"])

    bars = page.locator(".prob-bar")
    assert bars.count() == len(LABELS) == len(expected["probabilities"])
    for name, p in expected["probabilities"].items():
        bar = page.locator(f'.prob-bar[data-label="{name}"]')
        track = bar.locator("xpath=..").bounding_box()
        width = bar.bounding_box()["width"] if bar.is_visible() else 0.0   # a 0-width bar is not "visible"
        assert width / track["width"] == pytest.approx(p, abs=0.01), name
        row = page.locator(f'.prob-row[data-label="{name}"]')
        assert_percent(row.locator(".prob-value").inner_text(), p)
    # most likely first
    shown = [float(b.get_attribute("data-probability")) for b in bars.all()]
    assert shown == sorted(shown, reverse=True)

    m = expected["model"]
    model_line = page.locator("#model-used")
    text = model_line.inner_text()
    assert m["name"] in text and m["version"] in text and m["role"] in text
    assert model_line.get_attribute("data-role") == m["role"]
    assert page.locator("#fell-back").get_attribute("data-fell-back") == str(expected["fell_back"]).lower()
    assert " ms for " in page.locator("#inference-time").inner_text()

    segments = expected["segments"]
    if len(segments) > 1:
        blocks = page.locator("#timeline .segment")
        sync_api.expect(page.locator("#timeline-section")).to_be_visible()
        assert blocks.count() == len(segments)
        assert [b.get_attribute("data-label") for b in blocks.all()] == [s["label"] or "" for s in segments]
        assert (segments[0]["label"] or "no speech") in blocks.first.get_attribute("title")
    else:
        sync_api.expect(page.locator("#timeline-section")).to_be_hidden()


def test_upload_shows_the_api_answer_and_errors(page, base_url, clip, tmp_path):
    sync_api.expect(page).to_have_title("Speech emotion recognition")
    assert page.evaluate("getComputedStyle(document.body).margin") == "0px"   # the style sheet applies
    assert page.locator('a[href="docs"]').first.is_visible()
    sync_api.expect(page.locator("#status")).to_have_attribute("aria-live", "polite")

    # model=auto: the page's default
    page.set_input_files("#file-input", str(clip))
    sync_api.expect(page.locator("#result-label")).not_to_be_empty()
    check_result_shown(page, api_predict(base_url, clip, "auto"))
    assert page.locator("#status").inner_text().startswith("Result: ")

    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # choosing another model asks again, sending the API key when one is typed
    page.fill("#api-key", "k" * 20)
    with page.expect_request(lambda r: "/predict" in r.url) as req:
        page.locator('label:has(#model-student)').click()
    assert req.value.headers.get("x-api-key") == "k" * 20
    assert "model=student" in req.value.url and "segments=true" in req.value.url and "top_k=6" in req.value.url
    sync_api.expect(page.locator("#model-used")).to_have_attribute("data-role", "student")
    check_result_shown(page, api_predict(base_url, clip, "student"))

    # not audio: the API's error code and message are shown, the result is not
    junk = tmp_path / "notes.txt"
    junk.write_text("this is not audio\n")
    api = httpx.post(f"{base_url}/predict", files={"file": (junk.name, junk.read_bytes())}, timeout=30).json()["error"]
    page.set_input_files("#file-input", str(junk))
    error = page.locator("#error")
    sync_api.expect(error).to_be_visible()
    sync_api.expect(error).to_have_attribute("role", "alert")
    assert page.locator("#error-code").inner_text() == api["code"] == "unsupported_audio"
    assert "accepted formats" in page.locator("#error-message").inner_text()
    assert "415" in error.inner_text()
    sync_api.expect(page.locator("#result")).to_be_hidden()


def test_no_speech_is_said_plainly(page, base_url, tmp_path):
    """3 s of silence: the page says "No speech", shows no emotion and no probabilities."""
    quiet = tmp_path / "quiet.wav"
    quiet.write_bytes(silence_file(3, 16_000, 1, "WAV"))
    assert api_predict(base_url, quiet, "auto")["no_speech"] is True
    page.set_input_files("#file-input", str(quiet))
    sync_api.expect(page.locator("#result-label")).to_have_text("No speech")
    assert page.locator("#result-label").get_attribute("data-no-speech") == "true"
    assert "no emotion" in page.locator(".confidence").inner_text()
    assert page.locator(".prob-bar").count() == 0
    assert page.locator("#status").inner_text() == "Result: no speech heard in the audio."


def test_microphone_recording_is_sent_as_wav(page):
    """Chromium's fake microphone: MediaRecorder -> decoded and re-encoded as 16-bit WAV in JS -> /predict."""
    page.evaluate("""() => {   // keep each Blob the page plays, to read back what it sent
        window.testBlobs = [];
        const create = URL.createObjectURL;
        URL.createObjectURL = (b) => { window.testBlobs.push(b); return create.call(URL, b); };
    }""")
    page.click("#record-button")
    sync_api.expect(page.locator("#record-button")).to_have_attribute("aria-pressed", "true")
    page.wait_for_timeout(1500)
    with page.expect_response(lambda r: "/predict" in r.url) as resp:
        page.click("#record-button")
    # only WAV/FLAC/OGG/MP3 decode on the server: a 200 means the browser's WAV was readable
    assert resp.value.status == 200, resp.value.text()
    sync_api.expect(page.locator("#result")).to_be_visible()
    assert page.locator("#clip-name").inner_text() == "recording.wav"
    # what was sent: a mono 16-bit PCM WAV at 16 kHz, about as long as the recording (read from the
    # Blob itself: the page's policy does not let even a test fetch() a blob: URL)
    header = page.evaluate("""async () => {
        const b = new Uint8Array(await window.testBlobs[window.testBlobs.length - 1].arrayBuffer());
        const v = new DataView(b.buffer);
        return {riff: String.fromCharCode(...b.slice(0, 4)), wave: String.fromCharCode(...b.slice(8, 16)),
                format: v.getUint16(20, true), channels: v.getUint16(22, true), rate: v.getUint32(24, true),
                bits: v.getUint16(34, true), seconds: v.getUint32(40, true) / 2 / v.getUint32(24, true)};
    }""")
    assert header["riff"] == "RIFF" and header["wave"] == "WAVEfmt "
    assert (header["format"], header["channels"], header["rate"], header["bits"]) == (1, 1, 16_000, 16)
    assert 0.8 < header["seconds"] < 3.0
    # the fake microphone plays a beep, which the speech gate may refuse: either answer is shown in full
    shown = page.locator("#result-label").inner_text().strip().lower()
    assert shown in (*LABELS, "no speech")
    assert page.locator(".prob-bar").count() == (0 if shown == "no speech" else len(LABELS))


def test_drag_and_drop_a_file(page):
    data = list(wav_bytes(1.5))
    handle = page.evaluate_handle("""(bytes) => {
        const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array(bytes)], "dropped.wav", {type: "audio/wav"}));
        return dt;
    }""", data)
    zone = page.locator("#drop-zone")
    zone.dispatch_event("dragenter", {"dataTransfer": handle})
    sync_api.expect(zone).to_have_class(re.compile(r"\bdragging\b"))
    zone.dispatch_event("drop", {"dataTransfer": handle})
    sync_api.expect(page.locator("#result")).to_be_visible()
    assert page.locator("#clip-name").inner_text() == "dropped.wav"
    assert page.locator("#result-label").inner_text().strip().lower() in LABELS
    sync_api.expect(zone).not_to_have_class(re.compile(r"\bdragging\b"))


def test_api_docs_render_without_the_internet(browser, base_url):
    """Swagger UI draws the routes from assets the service serves itself (no CDN, no outside request)."""
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    foreign = []
    pg.on("request", lambda r: None if r.url.startswith((base_url, "data:")) else foreign.append(r.url))
    pg.goto(f"{base_url}/docs")
    pg.locator(".opblock-summary-path", has_text="/predict/batch").wait_for()
    context.close()
    assert not foreign, f"/docs loaded outside resources: {foreign}"
