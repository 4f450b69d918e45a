"""The report in a real browser: headless Chromium loads it from disk, offline.

Checks what only a browser can: the file renders (a screenshot that is not one flat
colour), logs no console error, and makes no network request of any kind (Chrome DevTools
``Network.requestWillBeSent`` events, from the performance log). Uses Debian's
``chromium`` + ``chromium-driver`` (``scripts/install-deps``) through Selenium — never a
downloaded browser — and skips with the reason when either is missing.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reports.report import write_report

DATA = Path(__file__).parent / "data" / "results"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--window-size=1100,1400")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                    "(pip install selenium; it is in the test extras)")
    if not Path(CHROMIUM).exists() or not Path(CHROMEDRIVER).exists():
        pytest.skip("headless Chromium not installed: run scripts/install-deps "
                    "(apt packages chromium and chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _requests(driver: Any) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


@pytest.mark.parametrize("names", [["sweep_grid"], ["diagnose"], ["hostile"],
                                   ["sweep", "baseline", "compare"]])
def test_report_loads_offline_without_errors(browser: Any, tmp_path: Path,
                                             names: list[str]) -> None:
    from PIL import Image

    out = write_report([DATA / f"{n}.json" for n in names], tmp_path / "report.html")
    browser.get("about:blank")
    browser.get_log("performance")  # drop the start-up page's traffic
    browser.get_log("browser")
    url = out.resolve().as_uri()
    browser.get(url)
    assert browser.execute_script("return document.readyState") == "complete"
    assert browser.title.startswith("migration-bench report")

    console = [e for e in browser.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]
    assert console == [], console
    requests = [u for u in _requests(browser) if u != url]
    assert requests == [], f"the report made network requests: {requests}"

    # Nothing executed: the hostile fixture's <script> never ran (it would set a dialog).
    assert browser.execute_script("return document.querySelectorAll('script:not("
                                  "[type=\"application/json\"])').length") == 0
    assert browser.execute_script("return document.querySelectorAll('svg').length") > 0

    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": 1100, "height": 2400, "scale": 1}})
    png = base64.b64decode(shot["data"])
    (tmp_path / "screenshot.png").write_bytes(png)
    image = Image.open(io.BytesIO(png)).convert("L")
    low, high = image.getextrema()
    assert high - low > 100, "the screenshot is blank"
    histogram = image.histogram()
    assert max(histogram) < 0.97 * sum(histogram), "the screenshot is nearly one colour"
