"""The web page at / in headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium): recordings uploaded, followed live, canceled, read, played along and downloaded; the
API key asked for; a phone-sized screen. Any error in the browser's console fails the test.

`UPDATE_SCREENSHOTS=1` writes the screenshots taken on the way to docs/ (the README's).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import srt
from selenium import webdriver
from selenium.webdriver import Chrome
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.command import Command
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.audio import JFK, JFK_PHRASE, REPO_ROOT, normalize
from tests.hostile import clip
from tests.services import Service
from tests.speaker_audio import stereo_in_turns

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1100, 860)
PHONE = (390, 844)
JOB_DEADLINE_S = 240.0
"""Long enough for a first timestamped job (model conversion) on a busy 2-core machine."""
PAGE_BYTES_LIMIT = 64 * 1024
"""The page's own files (HTML, CSS, JavaScript, icon): all of them, uncompressed."""
PAGE_LOAD_LIMIT_MS = 3000.0

T = TypeVar("T")


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[Chrome]:
    """Headless Chromium at a fixed size, its console kept, downloads going to `downloads`."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    assert not missing, f"{', '.join(missing)} missing: `make setup` installs them"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
        "--no-first-run", "--disable-extensions", f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(options=options, service=DriverService(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def until(driver: Chrome, condition: Callable[[Chrome], T], timeout_s: float, what: str) -> T:
    """Wait for `condition` to hold (poll every 0.1 s), failing with `what` at the deadline."""
    value: T = WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(
        condition, f"timed out after {timeout_s:.0f} s waiting for {what}"
    )
    return value


def console_errors(driver: Chrome) -> list[dict[str, Any]]:
    """The console's errors since the last call (the log is read destructively)."""
    entries: list[dict[str, Any]] = driver.execute(Command.GET_LOG, {"type": "browser"})["value"]
    return [entry for entry in entries if entry["level"] == "SEVERE"]


def screenshot(driver: Chrome, name: str, folder: Path) -> Path:
    """Save the visible page as `name`.png, also into docs/ when UPDATE_SCREENSHOTS is set."""
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path)), name
    if os.environ.get("UPDATE_SCREENSHOTS"):
        shutil.copy(path, REPO_ROOT / "docs" / path.name)
    return path


def open_page(driver: Chrome, service: Service) -> None:
    driver.get(f"{service.url}/")
    until(driver, lambda d: d.find_element(By.ID, "engine").get_attribute("value"), 20, "options")
    console_errors(driver)  # a fresh page: only what happens from here on counts


def card(driver: Chrome, name: str) -> WebElement:
    """The job card (under "Submitted here") of the file called `name`."""
    for element in driver.find_elements(By.CSS_SELECTOR, "#session-jobs .job"):
        if element.find_element(By.CSS_SELECTOR, ".name").text.startswith(name):
            return element
    raise LookupError(name)


def status_of(driver: Chrome, name: str) -> str | None:
    try:
        return card(driver, name).get_attribute("data-status")
    except LookupError:
        return None


def player(driver: Chrome, attribute: str) -> Any:
    """An attribute of the page's audio element (currentTime, readyState, ...)."""
    return driver.execute_script(f"return document.getElementById('player').{attribute}")


def history_has(driver: Chrome, job_id: str | None) -> bool:
    return bool(driver.find_elements(By.CSS_SELECTOR, f"#history tr[data-job-id='{job_id}']"))


def test_recordings_are_transcribed_followed_and_played_along(
    browser: Chrome, service: Service, tmp_path: Path, downloads: Path
) -> None:
    browser.set_window_size(*WINDOW)
    open_page(browser, service)
    timing = browser.execute_script(
        "const n = performance.getEntriesByType('navigation')[0];"
        "return {load: n.loadEventEnd, html: n.encodedBodySize, resources: performance"
        ".getEntriesByType('resource').map(r => [r.name, r.encodedBodySize])};"
    )
    own = {name.rsplit("/", 1)[-1]: size for name, size in timing["resources"] if "/web/" in name}
    assert {"app.css", "app.js"} <= set(own), timing
    assert timing["html"] + sum(own.values()) < PAGE_BYTES_LIMIT, timing
    assert timing["load"] < PAGE_LOAD_LIMIT_MS, timing
    screenshot(browser, "web-idle", tmp_path)

    # Two files at once: jfk.flac runs first; the clip waits behind it and is canceled there.
    waiting = clip(JFK, tmp_path / "clip.wav", 2.0)
    Select(browser.find_element(By.ID, "engine")).select_by_value("timestamped")
    Select(browser.find_element(By.ID, "language")).select_by_value("en")
    files = browser.find_element(By.ID, "files")
    files.send_keys("\n".join(str(path) for path in (JFK, waiting)))
    browser.find_element(By.ID, "transcribe").click()
    until(browser, lambda d: status_of(d, waiting.name) == "queued", JOB_DEADLINE_S, "the clip")
    assert status_of(browser, JFK.name) in ("queued", "started")
    card(browser, waiting.name).find_element(By.XPATH, ".//button[text()='Cancel']").click()
    until(browser, lambda d: status_of(d, waiting.name) == "canceled", 30, "the cancel")
    until(browser, lambda d: status_of(d, JFK.name) == "started", JOB_DEADLINE_S, "jfk to run")
    browser.execute_script("document.getElementById('session-title').scrollIntoView()")
    screenshot(browser, "web-running", tmp_path)

    until(browser, lambda d: status_of(d, JFK.name) == "finished", JOB_DEADLINE_S, "jfk.flac")
    words = until(
        browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#transcript .word"), 20, "words"
    )
    if "jfk" not in browser.find_element(By.ID, "viewer-title").text:
        card(browser, JFK.name).find_element(By.XPATH, ".//button[text()='Open']").click()
        until(browser, lambda d: "jfk" in d.find_element(By.ID, "viewer-title").text, 10, "jfk")
        words = browser.find_elements(By.CSS_SELECTOR, "#transcript .word")
    assert JFK_PHRASE in normalize(browser.find_element(By.ID, "transcript").text)

    # Clicking a word seeks the audio to the word's start, and that word is highlighted.
    until(browser, lambda d: player(d, "readyState") >= 1, 20, "the audio's metadata")
    country = next(word for word in words if word.text.lower().startswith("country"))
    start = float(country.get_attribute("data-start") or "nan")
    assert start > 1.0
    country.click()
    until(browser, lambda d: abs(player(d, "currentTime") - start) < 0.01, 10, "the seek")
    assert "current" in (country.get_attribute("class") or "")
    # From the keyboard: a segment takes focus and Enter seeks to its start.
    segment = browser.find_element(By.CSS_SELECTOR, "#transcript .segment")
    segment.send_keys(Keys.ENTER)
    segment_start = float(segment.get_attribute("data-start") or "nan")
    until(browser, lambda d: abs(player(d, "currentTime") - segment_start) < 0.01, 10, "Enter")
    country.click()
    browser.execute_script("document.getElementById('viewer').scrollIntoView()")
    screenshot(browser, "web-finished", tmp_path)

    browser.find_element(By.CSS_SELECTOR, "#downloads [data-format=srt]").click()
    saved = downloads / "jfk.srt"
    until(browser, lambda _d: saved.exists() and saved.stat().st_size > 0, 20, "the SRT download")
    cues = list(srt.parse(saved.read_text()))
    assert JFK_PHRASE in normalize(" ".join(cue.content for cue in cues))

    # The caller's jobs, filtered by status.
    job_id = card(browser, JFK.name).get_attribute("data-job-id")
    # Once running, the job was followed through its events stream (read with fetch()).
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(entry => entry.name)"
    )
    assert f"{service.url}/jobs/{job_id}/events" in fetched, fetched
    Select(browser.find_element(By.ID, "status-filter")).select_by_value("finished")
    until(browser, lambda d: history_has(d, job_id), 20, "the job in the finished list")
    Select(browser.find_element(By.ID, "status-filter")).select_by_value("canceled")
    until(browser, lambda d: not history_has(d, job_id), 20, "the canceled list without it")
    assert console_errors(browser) == []


def test_speakers_are_asked_for_and_coloured(
    browser: Chrome, service: Service, tmp_path: Path
) -> None:
    browser.set_window_size(*WINDOW)
    open_page(browser, service)
    audio = stereo_in_turns().write_wav(tmp_path / "two-speakers.wav")
    Select(browser.find_element(By.ID, "engine")).select_by_value("timestamped")
    browser.find_element(By.ID, "diarize").click()
    browser.find_element(By.ID, "files").send_keys(str(audio))
    browser.find_element(By.ID, "transcribe").click()
    until(browser, lambda d: status_of(d, audio.name) == "finished", JOB_DEADLINE_S, "the job")
    if "two-speakers" not in browser.find_element(By.ID, "viewer-title").text:
        card(browser, audio.name).find_element(By.XPATH, ".//button[text()='Open']").click()
    labels = until(
        browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#transcript .speaker"), 20, "labels"
    )
    assert {label.text for label in labels} == {"SPEAKER_00", "SPEAKER_01"}
    colours = {
        segment.get_attribute("class")
        for segment in browser.find_elements(By.CSS_SELECTOR, "#transcript .segment")
    }
    assert any("speaker-0" in (c or "") for c in colours)
    assert any("speaker-1" in (c or "") for c in colours)
    browser.find_element(By.ID, "diarize").click()  # back as the other tests expect it
    assert console_errors(browser) == []


def test_a_phone_sized_screen_needs_no_sideways_scrolling(
    browser: Chrome, service: Service
) -> None:
    browser.set_window_size(*PHONE)
    try:
        open_page(browser, service)
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        button = browser.find_element(By.ID, "transcribe")
        assert button.is_displayed()
        assert button.size["width"] >= 44
        # The file chooser is reachable from the keyboard.
        browser.find_element(By.ID, "drop").send_keys(Keys.TAB)
        assert console_errors(browser) == []
    finally:
        browser.set_window_size(*WINDOW)


def test_with_keys_on_the_page_asks_for_a_key_and_shows_the_servers_answer(
    browser: Chrome, keyed_service: Service
) -> None:
    assert keyed_service.admin_key is not None
    open_page(browser, keyed_service)
    message = browser.find_element(By.ID, "key-message")
    until(browser, lambda d: d.find_element(By.ID, "key-section").is_displayed(), 20, "the key")
    until(browser, lambda _d: "needs an API key" in message.text, 10, "the server's reason")
    key = browser.find_element(By.ID, "api-key")
    key.send_keys("tsk_wrong", Keys.ENTER)
    refused = "the API key is unknown or has been revoked"
    until(browser, lambda _d: message.text == refused, 10, "the server's answer to a wrong key")
    key.clear()
    key.send_keys(keyed_service.admin_key, Keys.ENTER)
    until(browser, lambda _d: message.text == "Key accepted.", 10, "the key to be accepted")
    stored = browser.execute_script("return sessionStorage.getItem('transcribe.apiKey')")
    assert stored == keyed_service.admin_key

    # The upload, the long-poll and the download all carry the key.
    browser.find_element(By.ID, "files").send_keys(str(JFK))
    browser.find_element(By.ID, "transcribe").click()
    until(browser, lambda d: status_of(d, JFK.name) == "finished", JOB_DEADLINE_S, "the job")
    transcript = browser.find_element(By.ID, "transcript")
    until(browser, lambda _d: JFK_PHRASE in normalize(transcript.text), 20, "the transcript")
    # Only the two refused requests (no key, then the wrong one) may show in the console.
    errors = console_errors(browser)
    assert all(e["source"] == "network" and " 401 " in e["message"] for e in errors), errors
    assert len(errors) <= 2, errors
