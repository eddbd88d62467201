"""A real browser for tests: headless Chromium (Debian's `chromium`) driven by Selenium through Debian's
`chromedriver` (package `chromium-driver`, built from the same source as the browser, so their versions match).

Without them the test is skipped locally and fails in CI (CI set): .ci/run installs both, so a missing browser
there is a broken CI, not a reason to skip. Screenshots (and the page's DOM) go to tests/artifacts/
(gitignored).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from support.waiting import wait_for

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what}; .ci/run must install it")
    pytest.skip(f"{what} (apt-get install chromium chromium-driver; pip install -e '.[test]')")


def chromium(width: int = 1400, height: int = 900):
    """A started headless Chromium (a selenium WebDriver); the caller quits it."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser:
        _missing("Chromium is not installed")
    if not driver:
        _missing("chromedriver is not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        # Chromium's own sandbox needs user namespaces or a setuid helper, which CI containers (and root) lack;
        # this browser only ever loads the test's own server on loopback.
        "--no-sandbox",
        "--disable-dev-shm-usage",  # containers give /dev/shm 64 MB, too small for a renderer
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    # The page's console messages (errors, CSP violations), read back with console_errors().
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager would otherwise try to download one (there is no internet).
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def console_errors(driver) -> list[str]:
    """The browser console's errors since the last call (uncaught exceptions, failed loads, CSP refusals)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def keep_page(driver, name: str) -> Path:
    """Keep the page as tests/artifacts/NAME.png, and its DOM as NAME.html (what a selector failure needs)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    path.with_suffix(".html").write_text(driver.page_source)
    return path


WIDTH = 1280  # the console's pages must fit a laptop's 1280 px (issue 19)


def open_page(driver, server, path: str, name: str):
    """Load a console page, check it loaded without console errors and fits the window; keep it."""
    driver.get(server.url + path)
    wait_for(
        lambda: driver.execute_script("return document.readyState"), lambda s: s == "complete", what=f"{path} loaded"
    )
    overflow = driver.execute_script("return document.documentElement.scrollWidth")
    keep_page(driver, name)
    assert console_errors(driver) == [], f"{path} logged errors"
    assert overflow <= WIDTH, f"{path} is {overflow} px wide at {WIDTH} px"


def run_script(driver, script: str, until, what: str, timeout: float = 120):
    """Run ``script`` in the page until its answer satisfies ``until``."""
    return wait_for(lambda: driver.execute_script(script), until, timeout=timeout, interval=0.2, what=what)
