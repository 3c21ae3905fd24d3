"""Browser testing: serve an app on loopback, drive Debian's Chromium, check and photograph pages."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

CHROMIUM = os.environ.get("LIVENESS_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(
    os.environ.get("LIVENESS_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts")
)
SHOTS = ARTIFACTS / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

# Every visible input, select and textarea has a label; the contrast of every text against
# its background is at least 4.5:1 (WCAG AA). Returns the offenders, described.
CHECKS = """
() => {
  const problems = [];
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (el.type === 'hidden') continue;
    const named = (el.labels && el.labels.length) || el.getAttribute('aria-label');
    if (!named) problems.push('unlabelled ' + el.tagName + '#' + el.id);
  }
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  for (const el of document.querySelectorAll('body *')) {
    if (el.closest('svg')) continue;
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden') continue;
    const fg = lum(rgb(style.color).slice(0, 3)), bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    if (ratio < 4.5) problems.push('contrast ' + ratio.toFixed(2) + ' ' + el.tagName + ': '
                                   + el.textContent.trim().slice(0, 30));
  }
  return problems;
}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve an app on a loopback port in a thread; give its base URL."""
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not running.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        running.should_exit = True
        thread.join(timeout=10)


def check_page(page: Any, name: str) -> None:
    """Photograph a page and refuse unlabelled inputs or text of poor contrast."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    problems = page.evaluate(CHECKS)
    assert problems == [], f"{name}: {problems}"


def signed_in_page(
    browser: Any, base: str, token: str, *, viewport: dict[str, int]
) -> tuple[Any, Any]:
    """Open a zh-CN browser context of `viewport` and sign its first page in by keyboard."""
    context = browser.new_context(viewport=viewport, locale="zh-CN")
    page = context.new_page()
    sign_in_by_keyboard(page, base, token)
    return context, page


def sign_in_by_keyboard(page: Any, base: str, token: str) -> None:
    """Sign in using only the keyboard: tab to the token, type it, tab to the button, Enter."""
    page.goto(f"{base}/web/sign-in")
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "token":
            break
    else:
        raise AssertionError("the token field cannot be reached by keyboard")
    page.keyboard.type(token)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.type") == "submit"
    with page.expect_navigation():
        page.keyboard.press("Enter")
