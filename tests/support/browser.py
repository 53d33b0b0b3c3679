"""The game page in a real Chromium (Playwright's sync API): the browser and what tests wait for."""

from contextlib import contextmanager
from pathlib import Path

from tests.support import harness

LIVE = 10_000  # ms a live change may take to show


@contextmanager
def chromium():
    """Debian's Chromium under Playwright; skips (fails under REQUIRE_ALL) without one.

    Use it for one module at a time: Playwright's sync API keeps an event loop running in this
    thread while the browser is open, so close it before other modules' async tests run."""
    harness.require(
        Path(harness.CHROMIUM).exists(), f"no Chromium at {harness.CHROMIUM} (apt-get install chromium)"
    )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=harness.CHROMIUM, args=harness.CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def wait_open(page, timeout=LIVE):
    page.wait_for_selector('#connection-status[data-state="open"]', timeout=timeout)


def virus_ids(page) -> set[str]:
    return set(
        page.eval_on_selector_all(
            "#playground button[data-virus-id]", "els => els.map(e => e.dataset.virusId)"
        )
    )


def wait_ids(page, expected: set[str], timeout=LIVE) -> None:
    page.wait_for_function(
        """expected => {
            const ids = [...document.querySelectorAll('#playground button[data-virus-id]')]
                .map(e => e.dataset.virusId).sort();
            return JSON.stringify(ids) === JSON.stringify(expected);
        }""",
        arg=sorted(expected),
        timeout=timeout,
    )
