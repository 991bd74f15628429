"""The page's Live mode in headless Chromium, with a fake microphone playing a real clip,
against the real server: AudioWorklet -> 16-bit PCM over /stream -> the timeline."""

from __future__ import annotations

import io
import re

import httpx
import numpy as np
import pytest

from service.audio import load_audio
from service.labels import LABELS
from devtools.audio import encode, voice
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, playwright_or_skip
from devtools.data import RAVDESS_CLIP
from devtools.server import running_server

sync_api = playwright_or_skip()
Image = pytest.importorskip("PIL.Image", reason="Pillow reads the screenshot")


@pytest.fixture(scope="module")
def base_url(student_bundle, teacher_bundle):
    # Chromium's fake microphone plays a beep, which the speech gate refuses as it should, window
    # by window as each fresh look decides; these tests are about the live timeline, so every
    # window counts here (test_stream.py and test_web_page.py check the no-speech answers).
    with running_server(student_bundle, teacher_bundle, settings={"SER_SPEECH_GATE": "false"}) as (base, _):
        yield base


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Chromium whose fake microphone plays real speech (generated speech-like audio without the corpus)."""
    x = load_audio(RAVDESS_CLIP) if RAVDESS_CLIP.is_file() else voice(3.0)
    wav = tmp_path_factory.mktemp("mic") / "mic.wav"
    wav.write_bytes(encode(x, 16_000, "WAV", "PCM_16"))
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM),
                              args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}"])
        yield b
        b.close()


def open_page(browser, base_url):
    """The page under the server's own Content-Security-Policy: anything it blocks (an inline
    script or style, a WebSocket it does not allow) is a problem of the page."""
    context = browser.new_context(viewport={"width": 1280, "height": 1100}, reduced_motion="reduce")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    problems = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    served = page.goto(f"{base_url}/")
    assert "script-src 'self';" in served.headers["content-security-policy"]
    return context, page, problems


def rgb(css: str) -> np.ndarray:
    return np.array([float(v) for v in re.findall(r"[\d.]+", css)[:3]])


def check_screenshot(page) -> None:
    """The pixels of the timeline: each row's newest cell is its label's colour at the cell's
    opacity over the track; the track left of the cells is bare."""
    timeline = page.locator("#live-timeline")
    shot = timeline.screenshot()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB")).astype(float)
    origin = timeline.bounding_box()

    def mean_colour(box) -> np.ndarray:
        x0, y0 = round(box["x"] - origin["x"]) + 1, round(box["y"] - origin["y"]) + 1
        x1, y1 = round(box["x"] + box["width"] - origin["x"]) - 1, round(box["y"] + box["height"] - origin["y"]) - 4
        return pixels[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0)

    for row in page.locator("#live-timeline .live-row").all():
        track, cell = row.locator(".live-track"), row.locator("i").last
        style = cell.evaluate("e => [getComputedStyle(e).backgroundColor, getComputedStyle(e).opacity]")
        bare = track.evaluate("e => getComputedStyle(e).backgroundColor")
        alpha = float(style[1])
        expected = alpha * rgb(style[0]) + (1 - alpha) * rgb(bare)
        assert np.abs(mean_colour(cell.bounding_box()) - expected).max() < 12, row.get_attribute("data-label")
        t = track.bounding_box()
        left = {**t, "width": t["width"] * 0.3}   # fewer than 40 of the 60 columns are filled
        assert np.abs(mean_colour(left) - rgb(bare)).max() < 3


def go_live(page, events: int) -> None:
    page.locator('label:has(#model-student)').click()
    page.click("#live-button")
    sync_api.expect(page.locator("#live-button")).to_have_attribute("aria-pressed", "true")
    # an attribute match, not wait_for_function: a script evaluated from a string would break the strict CSP
    at_least = rf"^([{events}-9]|\d\d+)$"
    sync_api.expect(page.locator("#live-timeline")).to_have_attribute("data-events", re.compile(at_least), timeout=30_000)


def test_live_mode_fills_the_timeline_from_the_server(browser, base_url):
    context, page, problems = open_page(browser, base_url)
    html = page.content()
    live = html[html.index('id="live-card"'):html.index("</section>", html.index('id="live-card"'))]
    assert not re.search(r"\son[a-z]+=", live)   # no inline handlers
    go_live(page, 4)
    page.click("#live-button")   # stop: the last windows, the summary, then a normal close
    sync_api.expect(page.locator("#live-summary")).to_have_text(re.compile(r"^Stream ended: [\d.]+ s, \d+ windows"))
    sync_api.expect(page.locator("#live-button")).to_have_attribute("aria-pressed", "false")
    sync_api.expect(page.locator("#live-error")).to_be_hidden()

    rows = page.locator("#live-timeline .live-row")
    assert [r.get_attribute("data-label") for r in rows.all()] == list(LABELS)
    columns = [[float(c.get_attribute("data-probability")) for c in r.locator("i").all()] for r in rows.all()]
    n = len(columns[0])
    assert n >= 4 and all(len(c) == n for c in columns)
    assert all(abs(sum(col[i] for col in columns) - 1) < 1e-3 for i in range(n))   # each column: one window
    # the top cell of each column is the label the server named most likely
    tops = page.locator("#live-timeline i.top")
    assert tops.count() == n
    label = page.locator("#live-label").inner_text().strip().lower()
    assert label in LABELS and "student" in page.locator("#live-meta").inner_text()
    # each row in its label's colour, as in the clip timeline
    backgrounds = {r.get_attribute("data-label"): r.locator("i").first.evaluate("e => e.style.background")
                   for r in rows.all()}
    assert len(set(backgrounds.values())) == len(LABELS)

    check_screenshot(page)
    windows = int(re.search(r"(\d+) windows", page.locator("#live-summary").inner_text())[1])
    assert windows == n == int(page.locator("#live-timeline").get_attribute("data-events"))
    metrics = httpx.get(f"{base_url}/metrics").text
    assert re.search(r'ser_stream_closes_total\{code="1000"\} [1-9]', metrics)
    context.close()
    assert not problems, problems


def test_live_mode_sends_the_key_and_shows_the_servers_error(browser, student_bundle):
    key = "live-page-key-0123456789"
    with running_server(student_bundle, None, settings={"SER_API_KEY": key}) as (base, _):
        context, page, problems = open_page(browser, base)
        page.click("#live-button")
        sync_api.expect(page.locator("#live-error")).to_be_visible()
        assert page.locator("#live-error-code").inner_text() == "unauthorized"
        sync_api.expect(page.locator("#live-button")).to_have_attribute("aria-pressed", "false")
        page.fill("#api-key", key)
        go_live(page, 2)
        sync_api.expect(page.locator("#live-error")).to_be_hidden()
        page.click("#live-button")
        sync_api.expect(page.locator("#live-summary")).to_contain_text("Stream ended")
        context.close()
        assert not problems, problems
