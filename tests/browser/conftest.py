"""Fixtures of the browser tests."""

from __future__ import annotations

import pytest

from browser.helpers import BUNDLE, browser, require_chromium


@pytest.fixture(scope="module")
def chromium():
    """One Playwright + Chromium for the module (two sync Playwright instances cannot coexist)."""
    require_chromium()
    assert BUNDLE.exists(), "build the front end first: npm install && npm run build"
    with browser() as b:
        yield b
