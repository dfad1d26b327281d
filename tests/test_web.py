"""The example chat page, driven in headless Chromium."""

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags for a closed network and a root user (see the machine notes in the README).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def web_server(monkeypatch: pytest.MonkeyPatch):
    uvicorn = pytest.importorskip("uvicorn")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    from examples.web.app import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_page_answers_with_progress_and_clickable_citations(web_server: str, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    upload = ROOT / "examples" / "pride_and_prejudice.txt"
    # Offsets refer to the file exactly as uploaded (no newline translation).
    served = upload.read_bytes().decode("utf-8")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(web_server)
        page.set_input_files("#file", str(upload))
        page.wait_for_selector("body[data-document=ready]")
        page.fill("#question", "How much a year was Mr. Bennet's estate worth?")
        page.click("#ask")
        page.wait_for_function("document.getElementById('bar-analysis').dataset.percent === '100'", timeout=120_000)
        page.wait_for_selector("body[data-state=answered]", timeout=120_000)
        for stage in ("check", "split", "analysis", "synthesis"):
            assert page.get_attribute(f"#bar-{stage}", "data-percent") == "100"
        assert "two thousand a year" in page.inner_text("#answer")
        buttons = page.locator(".citation")
        assert buttons.count() >= 1
        clicked = None
        for index in range(buttons.count()):
            start = int(buttons.nth(index).get_attribute("data-start"))
            end = int(buttons.nth(index).get_attribute("data-end"))
            if "two thousand a year" in " ".join(served[start:end].split()):
                clicked = (start, end)
                buttons.nth(index).click()
                break
        assert clicked is not None
        highlighted = page.eval_on_selector("#highlight", "el => el.textContent")
        assert highlighted == served[clicked[0] : clicked[1]]
        # The highlighted span was scrolled into view.
        assert page.eval_on_selector(
            "#highlight", "el => { const r = el.getBoundingClientRect(); return r.top < innerHeight && r.bottom > 0; }"
        )
        page.screenshot(path=str(tmp_path / "answer.png"), full_page=False)
        browser.close()
    assert (tmp_path / "answer.png").stat().st_size > 10_000
