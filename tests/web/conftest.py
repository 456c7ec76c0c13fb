"""The browser the page tests drive: Debian's headless Chromium through Playwright (never a downloaded
one), launched once for the session and shared; each test opens its own context."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """A running Chromium. The test command installs it (.ci/setup-venv --browser); a missing browser is
    a failure, not a skip."""
    assert shutil.which(CHROMIUM), "install Debian's chromium and fonts-wqy-microhei (bash tests/run.sh does)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
