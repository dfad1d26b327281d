"""The example chat page, driven in headless Chromium."""

import json
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rlm_graph.file_input import read_file

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags for a closed network and a root user: without the background-networking ones Chromium keeps
# opening connections that a closed network refuses; as root it needs --no-sandbox.
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


def _serve(app: object) -> Iterator[str]:
    uvicorn = pytest.importorskip("uvicorn")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def web_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    pytest.importorskip("uvicorn")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    from examples.web.app import create_app

    yield from _serve(create_app())


@pytest.fixture
def small_limit_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    pytest.importorskip("uvicorn")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    from examples.web.app import create_app

    yield from _serve(create_app(max_document_bytes=10_000))


@pytest.fixture
def browser_page() -> Iterator[Callable[[], object]]:
    """A headless Chromium page that records uncaught page errors in ``page.errors_seen``."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.errors_seen = []
        page.on("pageerror", lambda error: page.errors_seen.append(str(error)))
        yield page
        browser.close()


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    testclient = pytest.importorskip("starlette.testclient")
    from examples.web.app import create_app

    return testclient.TestClient(create_app(max_document_bytes=2 * 1024 * 1024))


EMOJI_LINES = "\n".join(f"Status report 👍🏽🎉 all good 😀 on day {i}." for i in range(1500))
FACT = "The vault combination is 4-8-15-16-23-42."
EMOJI_DOCUMENT = f"{EMOJI_LINES}\n\n{FACT}\n\n{EMOJI_LINES}"


def _ask_and_click_the_fact(page, document: str, question: str, fact: str = FACT) -> tuple[str, str]:
    """Ask, wait for the answer, click the citation holding ``fact``; return (cited, highlighted).

    The cited text is compared with its runs of whitespace made single spaces, so a fact
    that wraps across lines of the document is found too.
    """
    page.fill("#question", question)
    page.click("#ask")
    page.wait_for_selector("body[data-state=answered]", timeout=240_000)
    buttons = page.locator(".citation")
    for index in range(buttons.count()):
        start = int(buttons.nth(index).get_attribute("data-start"))
        end = int(buttons.nth(index).get_attribute("data-end"))
        if fact in " ".join(document[start:end].split()):
            buttons.nth(index).click()
            return document[start:end], page.eval_on_selector("#highlight", "el => el.textContent")
    pytest.fail(f"no citation covers {fact!r}; answer: {page.inner_text('#answer')!r}")
    return "", ""


def _open_with_the_novel(page, web_server: str):
    """The analysis page with Pride and Prejudice uploaded and ready to ask about."""
    page.goto(web_server)
    page.set_input_files("#file", str(ROOT / "examples" / "pride_and_prejudice.txt"))
    page.wait_for_selector("body[data-document=ready]")
    return page


def test_page_answers_with_progress_and_clickable_citations(web_server: str, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    upload = ROOT / "examples" / "pride_and_prejudice.txt"
    # Offsets refer to the file as every surface reads it (no byte-order mark, LF line ends).
    served = read_file(upload).text
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


def test_highlight_after_emoji_matches_the_cited_text(web_server: str, browser_page, tmp_path: Path) -> None:
    """Offsets count code points; the page must convert them to UTF-16 before slicing."""
    page = browser_page
    path = tmp_path / "emoji.txt"
    path.write_bytes(EMOJI_DOCUMENT.encode("utf-8"))
    page.goto(web_server)
    page.set_input_files("#file", str(path))
    page.wait_for_selector("body[data-document=ready]")
    cited, highlighted = _ask_and_click_the_fact(page, EMOJI_DOCUMENT, "What is the vault combination?")
    assert "4-8-15-16-23-42" in page.inner_text("#answer")
    assert highlighted == cited
    assert FACT in highlighted
    assert page.errors_seen == []


def test_pasted_document_over_one_mebibyte_works(web_server: str, browser_page) -> None:
    """A paste larger than multipart's 1 MiB field limit is stored, answered and highlighted."""
    page = browser_page
    filler = ("A sentence of a pasted novel 😀. " * 40 + "\n\n") * 420
    document = f"{filler}{FACT}\n\n{filler}"
    assert len(document.encode()) > 1024 * 1024
    page.goto(web_server)
    page.fill("#document", document)
    cited, highlighted = _ask_and_click_the_fact(page, document, "What is the vault combination?")
    assert highlighted == cited
    assert page.errors_seen == []


def test_analysis_bar_counts_reads_of_every_depth(web_server: str, browser_page) -> None:
    page = _open_with_the_novel(browser_page, web_server)
    # Record every label the analysis bar shows, with the bar's value at that moment.
    page.evaluate(
        """() => { window.barLabels = []; new MutationObserver(() => {
             const bar = document.getElementById('bar-analysis');
             const label = document.getElementById('pct-analysis');
             if (bar && label) window.barLabels.push([label.textContent, bar.value, bar.max]);
           }).observe(document.getElementById('stages'), {subtree: true, childList: true, characterData: true}); }"""
    )
    page.fill("#question", "How much a year was Mr. Bennet's estate worth?")
    page.click("#ask")
    page.wait_for_selector("body[data-state=answered]", timeout=240_000)
    labels = [entry for entry in page.evaluate("window.barLabels") if entry[0].endswith(" reads")]
    assert labels
    totals = {entry[2] for entry in labels}
    assert len(totals) == 1  # one run-wide total, not a level's own
    # The label and the bar say the same thing.
    for text, value, maximum in labels:
        assert text == f"{int(value)}/{int(maximum)} reads"
    assert labels[-1][0] == f"{int(labels[-1][2])}/{int(labels[-1][2])} reads"
    assert page.get_attribute("#bar-analysis", "data-percent") == "100"


def test_uploaded_pdf_shows_its_text_and_page_numbered_citations(
    web_server: str, browser_page, tmp_path: Path, frankenstein: str
) -> None:
    from rlm_graph.documents import extract_text
    from tests.test_documents import FACT, FACT_PAGE, make_pdf

    page = browser_page
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(make_pdf(frankenstein))
    extracted = extract_text(pdf.read_bytes()).text
    page.goto(web_server)
    page.set_input_files("#file", str(pdf))
    page.wait_for_selector("body[data-document=ready]")
    assert page.get_attribute("body", "data-format") == "pdf"
    # The page shows the extracted text, the one the offsets refer to.
    assert page.input_value("#document") == extracted
    page.fill("#question", "What is NEEDLE-0007?")
    page.click("#ask")
    page.wait_for_selector("body[data-state=answered]", timeout=240_000)
    assert "VAULTS" in page.inner_text("#answer")
    buttons = page.locator(".citation")
    for index in range(buttons.count()):
        start = int(buttons.nth(index).get_attribute("data-start"))
        end = int(buttons.nth(index).get_attribute("data-end"))
        if FACT in extracted[start:end]:
            label = buttons.nth(index).inner_text()
            pages = re.search(r"pages? (\d+)(?:-(\d+))?, characters", label)
            assert pages, label
            assert int(pages[1]) <= FACT_PAGE <= int(pages[2] or pages[1])
            buttons.nth(index).click()
            assert page.eval_on_selector("#highlight", "el => el.textContent") == extracted[start:end]
            break
    else:
        pytest.fail(f"no citation covers the fact; answer: {page.inner_text('#answer')!r}")
    assert page.errors_seen == []


def test_page_shows_error_replies_without_exceptions(small_limit_server: str, browser_page, tmp_path: Path) -> None:
    page = browser_page
    page.goto(small_limit_server)
    big = tmp_path / "big.txt"
    big.write_text("A line of a long text.\n" * 2000, encoding="utf-8")
    page.set_input_files("#file", str(big))
    page.wait_for_selector("body[data-state=failed]")
    assert "accepts documents up to" in page.inner_text("#errors")
    assert "(HTTP 413)" in page.inner_text("#errors")
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n")
    page.set_input_files("#file", str(pdf))
    page.wait_for_function("document.getElementById('errors').textContent.includes('PDF')")
    # A paste over the limit: the JSON error is shown too.
    page.fill("#document", "word " * 5000)
    page.fill("#question", "What?")
    page.click("#ask")
    page.wait_for_function("document.getElementById('errors').textContent.includes('accepts documents up to')")
    assert page.errors_seen == []


def test_upload_over_the_limit_is_413_json(client) -> None:
    big = ("x" * 99 + "\n") * 30_000  # 3 MB, over the 2 MiB limit
    reply = client.post("/api/documents", files={"file": ("big.txt", big.encode(), "text/plain")})
    assert reply.status_code == 413
    body = reply.json()
    assert "2.0 MiB" in body["error"]
    assert body["limit_bytes"] == 2 * 1024 * 1024
    reply = client.post("/api/documents", json={"text": big})
    assert reply.status_code == 413
    assert "accepts documents up to 2.0 MiB" in reply.json()["error"]


def test_upload_is_not_echoed(client) -> None:
    text = "The vault combination is 4-8-15-16-23-42. 😀\n" * 1000
    reply = client.post("/api/documents", files={"file": ("doc.txt", text.encode(), "text/plain")})
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {"id", "chars", "bytes", "sha256", "preview"}
    assert body["chars"] == len(text)
    assert body["bytes"] == len(text.encode())
    assert text.startswith(body["preview"])
    assert len(reply.content) < 1000


def test_paste_over_one_mebibyte_is_json_either_way(client) -> None:
    pasted = ("A sentence of a pasted novel. " * 40 + "\n\n") * 900  # 1.1 MB
    as_json = client.post("/api/documents", json={"text": pasted})
    assert as_json.status_code == 200
    assert as_json.json()["chars"] == len(pasted)
    # The form field limit is the document limit, not multipart's 1 MiB default.
    as_form = client.post("/api/documents", data={"text": pasted})
    assert as_form.status_code == 200
    assert as_form.headers["content-type"].startswith("application/json")


def test_errors_are_json(client) -> None:
    pdf = client.post("/api/documents", files={"file": ("paper.pdf", b"%PDF-1.4\n...", "application/pdf")})
    assert pdf.status_code == 415
    assert "paper.pdf could not be read as PDF" in pdf.json()["error"]
    latin = client.post("/api/documents", files={"file": ("l.txt", "café".encode("latin-1"), "text/plain")})
    assert latin.status_code == 415
    assert "not valid UTF-8" in latin.json()["error"]
    missing = client.post("/api/documents", data={"other": "x"})
    assert missing.status_code == 400
    assert "error" in missing.json()
    not_json = client.post("/api/documents", content=b"{oops", headers={"content-type": "application/json"})
    assert not_json.status_code == 400
    assert "not valid JSON" in not_json.json()["error"]
    nowhere = client.get("/api/nowhere")
    assert nowhere.status_code == 404
    assert nowhere.json() == {"error": "Not Found"}
    unknown = client.get("/api/ask", params={"doc": "nope", "q": "Why?"})
    assert unknown.status_code == 404
    assert "unknown document" in unknown.json()["error"]


def test_ask_errors_reach_an_event_source_as_failure_events(client) -> None:
    stored = client.post("/api/documents", json={"text": "The rent is forty pounds."}).json()
    headers = {"accept": "text/event-stream"}
    cases = (({"doc": "nope", "q": "Why?"}, "unknown document"), ({"doc": stored["id"], "q": " "}, "question is empty"))
    for params, expected in cases:
        reply = client.get("/api/ask", params=params, headers=headers)
        assert reply.headers["content-type"].startswith("text/event-stream")
        event, data = reply.text.strip().split("\n")
        assert event == "event: failure"
        assert expected in json.loads(data.removeprefix("data: "))["error"]


def test_document_limit_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("RLM_WEB_MAX_DOCUMENT_MB", "0.5")
    testclient = pytest.importorskip("starlette.testclient")
    from examples.web.app import create_app

    client = testclient.TestClient(create_app())
    assert client.get("/api/info").json()["max_document_bytes"] == 512 * 1024
    reply = client.post("/api/documents", json={"text": "x" * 600_000})
    assert reply.status_code == 413
    assert "0.5 MiB" in reply.json()["error"]


def test_page_shows_what_could_not_be_read(browser_page) -> None:
    """A part that fails is named in the answer the page shows, never hidden behind "not found"."""
    pytest.importorskip("uvicorn")
    from examples.web.app import create_app
    from rlm_graph import create_rlm_graph
    from tests.test_honesty import LAUNCH_QUESTION, failing_launch_reader, launch_document

    graph = create_rlm_graph(failing_launch_reader(), max_output_tokens=256, cache=False)
    page = browser_page
    for url in _serve(create_app(graph)):
        page.goto(url)
        page.fill("#document", launch_document())
        page.fill("#question", LAUNCH_QUESTION)
        page.click("#ask")
        page.wait_for_selector("body[data-state=answered]", timeout=120_000)
        shown = page.inner_text("#answer")
        assert "could not be read" in shown
        assert "does not appear to contain" not in shown
        assert page.errors_seen == []


def test_conversation_page_recalls_an_early_turn_with_a_clickable_citation(web_server: str, browser_page) -> None:
    """Issue 16: the long scripted thread on the page; a fact from turn 7 is recalled and cited at turn 401."""
    from examples.long_thread import fact

    page = browser_page
    page.goto(web_server + "/chat")
    page.wait_for_selector("body[data-thread=ready]")
    page.click("#scripted")
    page.wait_for_selector(".message[data-id='turn-400-assistant']", timeout=60_000)
    assert page.locator(".message").count() == 800
    page.fill("#text", "Remind me: what was NEEDLE-0007?")
    page.click("#send")
    page.wait_for_selector("body[data-state=answered]", timeout=120_000)
    reply = page.locator(".message.assistant").last
    assert fact(7) in reply.inner_text()
    steps = page.locator("#history li").all_inner_texts()
    assert re.fullmatch(r"Looking back through 7\d\d earlier messages", steps[0])
    assert "turn-007-user" in steps[-1]
    citation = reply.locator(".citation[data-cites='turn-007-user']")
    assert citation.count() == 1
    citation.click()
    highlighted = page.locator(".message.highlighted")
    assert highlighted.count() == 1
    assert highlighted.get_attribute("data-id") == "turn-007-user"
    assert fact(7) in highlighted.inner_text()
    in_view = "el => { const r = el.getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight; }"
    assert page.eval_on_selector(".message.highlighted", in_view)
    assert page.errors_seen == []


def test_conversation_survives_a_reload_and_keeps_both_pages(web_server: str, browser_page) -> None:
    page = browser_page
    page.goto(web_server + "/chat")
    page.wait_for_selector("body[data-thread=ready]")
    page.fill("#text", "thanks!")
    page.press("#text", "Enter")
    page.wait_for_selector("body[data-state=answered]", timeout=60_000)
    assert "Happy to help" in page.locator(".message.assistant").last.inner_text()
    page.reload()
    page.wait_for_selector("body[data-thread=ready]")
    assert page.locator(".message").all_inner_texts()[0].endswith("thanks!")
    assert page.locator(".message").count() == 2
    page.click("text=ask a document")
    page.wait_for_selector("#ask")
    assert page.errors_seen == []


def test_conversation_errors_are_json_or_failure_events(client) -> None:
    assert client.get("/api/threads/nope").status_code == 404
    assert "unknown conversation" in client.get("/api/threads/nope").json()["error"]
    assert client.post("/api/threads", params={"scripted": "lots"}).status_code == 400
    thread = client.post("/api/threads").json()["thread"]
    assert client.get(f"/api/threads/{thread}").json()["messages"] == []
    headers = {"accept": "text/event-stream"}
    for params, said in (({"thread": "nope", "q": "Hi"}, "unknown conversation"), ({"thread": thread}, "empty")):
        reply = client.get("/api/chat", params=params, headers=headers)
        assert reply.status_code == 200
        event = reply.text.split("\n")
        assert event[0] == "event: failure"
        assert said in json.loads(event[1].removeprefix("data: "))["error"]


def test_citation_highlights_the_quoted_sentence_not_the_part(web_server: str, browser_page) -> None:
    """A citation lands on the quoted passage: the highlight is that sentence, not pages of text."""
    page = _open_with_the_novel(browser_page, web_server)
    served = read_file(ROOT / "examples" / "pride_and_prejudice.txt").text
    question = "How much a year was Mr. Bennet's estate worth?"
    cited, highlighted = _ask_and_click_the_fact(page, served, question, "two thousand a year")
    assert highlighted == cited
    assert len(highlighted) < 400  # about two sentences, where a part is about 28,000 characters
    assert page.errors_seen == []


def test_split_bar_shows_how_much_is_planned_while_reading_begins(web_server: str, browser_page) -> None:
    page = _open_with_the_novel(browser_page, web_server)
    page.evaluate(
        """() => { window.splitBar = []; new MutationObserver(() => {
             const bar = document.getElementById('bar-split');
             if (bar) window.splitBar.push([bar.value, bar.max]);
           }).observe(document.getElementById('stages'), {subtree: true, childList: true, characterData: true,
                                                         attributes: true}); }"""
    )
    page.fill("#question", "How much a year was Mr. Bennet's estate worth?")
    page.click("#ask")
    page.wait_for_selector("body[data-state=answered]", timeout=240_000)
    values = page.evaluate("window.splitBar")
    # The plan's share of the text, in characters, grew before the split was done.
    planning = [(value, maximum) for value, maximum in values if maximum > 1]
    assert len({value for value, _ in planning}) >= 2
    assert all(0 < value < maximum for value, maximum in planning)
    assert [value for value, _ in planning] == sorted(value for value, _ in planning)
    assert page.get_attribute("#bar-split", "data-percent") == "100"
    assert page.errors_seen == []


def test_both_pages_share_one_script_for_requests_and_errors(client) -> None:
    script = client.get("/common.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "async function request(" in script.text
    assert "function showError(" in script.text
    for path in ("/", "/chat"):
        page = client.get(path).text
        # Loaded before the page's own script, and not written again in it.
        assert page.index('<script src="/common.js"></script>') < page.index("<script>\n")
        assert "async function request(" not in page
        assert "function showError(" not in page


def _record_status(page) -> None:
    """Record every status line with its level and the analysis bar's label at that moment."""
    page.evaluate(
        """() => { window.statusLines = []; new MutationObserver(() => {
             const status = document.getElementById('status');
             const label = document.getElementById('pct-analysis');
             window.statusLines.push([status.textContent, status.dataset.depth, label ? label.textContent : '']);
           }).observe(document.getElementById('status'), {subtree: true, childList: true, characterData: true}); }"""
    )


def test_status_line_and_analysis_bar_agree(web_server: str, browser_page) -> None:
    # 120,000 characters: five parts read side by side at depth 0 with the offline model.
    text = (ROOT / "examples" / "pride_and_prejudice.txt").read_text(encoding="utf-8")[:120_000]
    page = browser_page
    page.goto(web_server)
    page.fill("#document", text)
    _record_status(page)
    page.fill("#question", "How much a year was Mr. Bennet's estate worth?")
    page.click("#ask")
    page.wait_for_selector("body[data-state=answered]", timeout=240_000)
    lines = page.evaluate("window.statusLines")
    reading = [(status, label) for status, _, label in lines if status.startswith("Reading part ")]
    assert reading
    for status, label in reading:
        # "Reading part 5 of 5 (0 of 5 done)" beside "0/5 reads", never beside a bar that says otherwise.
        match = re.fullmatch(r"Reading part \d+ of (\d+) \((\d+) of \1 done\)", status)
        assert match, status
        assert label == f"{match.group(2)}/{match.group(1)} reads"
    assert lines[-1][0] == "Answer ready"
    assert [status for status, _, _ in lines].count("Answer ready") == 1
    assert page.errors_seen == []


def test_nested_status_lines_name_their_parent_part(web_server: str, browser_page) -> None:
    page = _open_with_the_novel(browser_page, web_server)
    _record_status(page)
    page.fill("#question", "How much a year was Mr. Bennet's estate worth?")
    page.click("#ask")
    page.wait_for_selector("body[data-state=answered]", timeout=240_000)
    lines = page.evaluate("window.statusLines")
    nested = [status for status, depth, _ in lines if depth != "0"]
    assert nested
    assert all(re.match(r"Part \d+ of \d+ > ", status) for status in nested), nested[:5]
    # Only the run says "Answer ready", once, at the end.
    assert [status for status, _, _ in lines if "Answer ready" in status] == ["Answer ready"]
    assert lines[-1][0] == "Answer ready"


def test_part_level_citation_highlights_its_sentence_strongly_and_its_part_faintly(browser_page) -> None:
    """A reader that quotes nothing: each citation is a whole part. The page says "part", marks
    the part faintly and its nearest sentence strongly, scrolls to the sentence, and the answer
    shows [n] after the sentence that uses citation n."""
    pytest.importorskip("uvicorn")
    from examples.web.app import create_app
    from rlm_graph import create_rlm_graph
    from tests.test_citations import UnquotingReader, two_fact_document

    document, facts = two_fact_document()
    graph = create_rlm_graph(UnquotingReader(window=2048, reserved_output=256), max_output_tokens=256, cache=False)
    page = browser_page
    for url in _serve(create_app(graph)):
        page.goto(url)
        page.fill("#document", document)
        page.fill("#question", "What are NEEDLE-0001 and NEEDLE-0002?")
        page.click("#ask")
        page.wait_for_selector("body[data-state=answered]", timeout=120_000)
        assert page.inner_text("#answer") == f"{facts[0]}.[1]\n{facts[1]}.[2]"
        page.click(".ref[data-citation='2']")
        button = page.locator(".citation[data-number='2']")
        assert button.get_attribute("data-kind") == "part"
        label = button.inner_text()
        assert re.search(r"^\[2\] part, characters \d+-\d+ \([\d,]+ characters\), nearest sentence: ", label), label
        assert label.endswith(f"nearest sentence: {facts[1]}.")
        start, end = int(button.get_attribute("data-start")), int(button.get_attribute("data-end"))
        assert page.eval_on_selector("#part-highlight", "el => el.textContent") == document[start:end]
        assert page.eval_on_selector("#highlight", "el => el.textContent") == f"{facts[1]}."
        assert page.eval_on_selector("#highlight", "el => el.parentElement.id") == "part-highlight"
        # Strong inside faint: two different backgrounds.
        colours = [
            page.eval_on_selector(selector, "el => getComputedStyle(el).backgroundColor")
            for selector in ("#part-highlight", "#highlight")
        ]
        assert colours[0] != colours[1]
        # Scrolled to the sentence (not to the middle of the part).
        assert page.eval_on_selector(
            "#highlight",
            """el => { const r = el.getBoundingClientRect();
                       const v = document.getElementById('right').getBoundingClientRect();
                       return r.top >= v.top && r.bottom <= v.bottom; }""",
        )
        # The answer's sentence using citation 2 is marked with it.
        assert page.locator("#answer .cited.active").all_inner_texts() == [f"{facts[1]}."]
        assert page.errors_seen == []


def test_uploaded_bom_crlf_file_is_cited_where_the_cli_cites_it(web_server: str, browser_page, tmp_path: Path) -> None:
    """One offsets rule: the page, the server and the CLI read a BOM + CRLF file as the same text."""
    from tests.test_cli import run_cli

    lines = [f"Line {i} of a report written on a Windows machine about ordinary things." for i in range(150)]
    lines[120] = "The vault combination is 4-8-15-16-23-42."
    path = tmp_path / "windows.txt"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8"))
    expected = read_file(path).text
    assert expected == "\n".join(lines)
    page = browser_page
    page.goto(web_server)
    page.set_input_files("#file", str(path))
    page.wait_for_selector("body[data-document=ready]")
    assert page.evaluate("documentText") == expected
    page.fill("#question", "What is the vault combination?")
    page.click("#ask")
    page.wait_for_selector("body[data-state=answered]", timeout=120_000)
    shown = page.locator(".citation").first
    names = ("data-start", "data-end", "data-sentence-start", "data-sentence-end")
    on_page = [shown.get_attribute(name) for name in names]
    result = run_cli("ask", str(path), "What is the vault combination?", "--json")
    assert result.returncode == 0, result.stderr
    cited = json.loads(result.stdout)["citations"][0]
    start, end = cited.get("sentence", cited)["start"], cited.get("sentence", cited)["end"]
    assert expected[start:end] == "The vault combination is 4-8-15-16-23-42."
    assert [int(v) for v in on_page if v is not None] == [
        cited["start"], cited["end"], *([start, end] if "sentence" in cited else [])
    ]
    shown.click()
    assert page.eval_on_selector("#highlight", "el => el.textContent") == expected[start:end]
    assert page.errors_seen == []
