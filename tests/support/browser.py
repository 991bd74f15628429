"""The real headless Chromium that the page tests drive through Playwright.

Needs the `playwright` Python package and the Debian `chromium` at /usr/bin/chromium
(scripts/install-test-deps.sh installs it; Playwright's own browser download is not used).
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                 "--no-first-run", "--disable-component-update", "--disable-sync",
                 # a fake microphone (a beep, or --use-file-for-fake-audio-capture) that needs no permission prompt
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
TIMEOUT_MS = 15_000


def playwright_or_skip():
    """playwright.sync_api, or skip the calling test module with the reason."""
    sync_api = pytest.importorskip("playwright.sync_api", exc_type=ImportError,
                                   reason="playwright is not installed or does not import (pip install playwright)")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}; run scripts/install-test-deps.sh", allow_module_level=True)
    return sync_api
