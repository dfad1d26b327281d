"""Documents people have (PDF, DOCX, HTML, Markdown, text): the extractor, the chat node, the CLI, the web API.

Every file is written here by a real library (fpdf2 for PDFs, python-docx for DOCX), so
the extractor reads what such tools produce.
"""

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from rlm_graph import DocumentChatState, create_document_node, create_rlm_graph
from rlm_graph.chat_messages import combine_documents, read_message, split_message
from rlm_graph.documents import (
    DOCX_MIME_TYPE,
    DocumentError,
    ExtractedDocument,
    Page,
    detect_format,
    extract_text,
    html_to_text,
)
from rlm_graph.file_input import read_document
from tests.fakes import PerfectReader
from tests.helpers import LoopTurns

FACT = "NEEDLE-0007 is VAULTS"
FACT_PAGE = 7
PAGES = 12


def _latin(text: str) -> str:
    # fpdf2's core fonts hold Latin-1 only.
    return text.encode("latin-1", errors="replace").decode("latin-1")


def make_pdf(prose: str, pages: int = PAGES, fact_page: int | None = FACT_PAGE, fact: str = FACT) -> bytes:
    """A PDF with a text layer, ``pages`` pages of prose; ``fact`` alone on a line of ``fact_page``."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=10)
    size = 2600

    def paragraph(text: str) -> None:
        pdf.multi_cell(0, 5, _latin(" ".join(text.split())), new_x="LMARGIN", new_y="NEXT")

    for number in range(1, pages + 1):
        pdf.add_page()
        paragraph(prose[number * size : number * size + size // 2])
        if number == fact_page:
            paragraph(f"{fact}.")  # its own line: a wrapped line would split the fact
        paragraph(prose[number * size + size // 2 : (number + 1) * size])
    return bytes(pdf.output())


def make_scanned_pdf() -> bytes:
    """A PDF of page images only, as a scanner writes it: no text layer."""
    from fpdf import FPDF
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (600, 300), "white")
    ImageDraw.Draw(image).text((20, 20), "The vault code is 1234.", fill="black")
    pdf = FPDF()
    for _ in range(2):
        pdf.add_page()
        pdf.image(image, x=10, y=10, w=180)
    return bytes(pdf.output())


def make_docx(prose: str) -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Quarterly report", level=1)
    for start in range(0, 20_000, 2000):
        document.add_paragraph(prose[start : start + 2000])
    document.add_paragraph(f"{FACT}.")
    table = document.add_table(rows=2, cols=2)
    for (row, col), text in {(0, 0): "Room", (0, 1): "Code", (1, 0): "Vault", (1, 1): "4-8-15"}.items():
        table.cell(row, col).text = text
    document.add_paragraph("After the table.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


HTML_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Vault &amp; keys</title>
<style>p { color: red; }</style><script>var secret = "SCRIPT-ONLY";</script></head>
<body><nav><a href="/">Home</a></nav>
<h1>The vault</h1>
<p>The   vault code
is kept <b>here</b>.<br>Second line &eacute;t&eacute;.</p>
<ul><li>first</li><li>second</li></ul>
<table><tr><th>Room</th><td>Vault</td></tr></table>
<p>NEEDLE-0007 is VAULTS.</p>
<pre>  keep
    this</pre>
</body></html>"""


@pytest.fixture(scope="module")
def pdf_bytes(frankenstein: str) -> bytes:
    return make_pdf(frankenstein)


# --- the extractor ---------------------------------------------------------------------------


def test_pdf_text_and_pages(pdf_bytes: bytes) -> None:
    document = extract_text(pdf_bytes, filename="report.pdf")
    assert document.format == "pdf"
    assert [page.number for page in document.pages] == list(range(1, PAGES + 1))
    offset = document.text.index(FACT)
    assert document.page_at(offset) == FACT_PAGE
    page = document.pages[FACT_PAGE - 1]
    assert FACT in document.text[page.start : page.end]
    # Pages tile the text in order, one paragraph break apart.
    assert all(a.end + 2 == b.start for a, b in zip(document.pages, document.pages[1:], strict=False))
    assert document.pages[-1].end == len(document.text)
    cited = document.cite({"start": offset, "end": offset + len(FACT)})
    assert (cited["page"], cited["last_page"]) == (FACT_PAGE, FACT_PAGE)
    across = document.cite({"start": document.pages[1].start, "end": document.pages[3].start + 5})
    assert (across["page"], across["last_page"]) == (2, 4)


def test_pdf_is_recognised_by_its_bytes_whatever_its_name(pdf_bytes: bytes) -> None:
    assert detect_format(pdf_bytes, "application/octet-stream", "upload.bin") == "pdf"
    assert extract_text(pdf_bytes).format == "pdf"


def test_scanned_pdf_gets_a_clear_message() -> None:
    with pytest.raises(DocumentError, match="scanned PDF without a text layer") as caught:
        extract_text(make_scanned_pdf(), filename="scan.pdf")
    assert caught.value.reason == "scanned"
    assert "scan.pdf" in str(caught.value)
    assert "2 pages of images" in str(caught.value)


def test_damaged_and_encrypted_pdfs_say_so() -> None:
    from fpdf import FPDF

    with pytest.raises(DocumentError, match="could not be read as PDF") as caught:
        extract_text(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", filename="broken.pdf")
    assert caught.value.reason == "damaged"
    locked = FPDF()
    locked.set_encryption(owner_password="owner", user_password="secret")
    locked.add_page()
    locked.set_font("helvetica", size=12)
    locked.cell(0, 10, "hidden")
    with pytest.raises(DocumentError, match="password-protected") as caught:
        extract_text(bytes(locked.output()), filename="locked.pdf")
    assert caught.value.reason == "encrypted"


def test_messages_can_be_translated() -> None:
    with pytest.raises(DocumentError, match=r"^scan\.pdf ist ein gescanntes PDF$"):
        extract_text(make_scanned_pdf(), filename="scan.pdf", messages={"scanned": "{name} ist ein gescanntes PDF"})


def test_missing_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch, pdf_bytes: bytes) -> None:
    monkeypatch.setitem(sys.modules, "pypdf", None)  # import pypdf now raises ImportError
    with pytest.raises(DocumentError, match=r'pip install "rlm-graph\[documents\]"') as caught:
        extract_text(pdf_bytes)
    assert caught.value.reason == "missing_extra"


def test_docx_paragraphs_and_tables_in_order(frankenstein: str) -> None:
    document = extract_text(make_docx(frankenstein), filename="report.docx")
    assert document.format == "docx"
    assert document.pages is None
    assert document.text.startswith("Quarterly report\n\n")
    assert f"{FACT}.\n\nRoom | Code\nVault | 4-8-15\n\nAfter the table." in document.text
    assert detect_format(make_docx("x"), None, None) == "docx"


W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
MC = 'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006"'


def _xml(text: str):
    from docx.oxml import parse_xml

    return parse_xml(text)


def _run(text: str, tag: str = "t") -> str:
    return f'<w:r><w:{tag} xml:space="preserve">{text}</w:{tag}></w:r>'


def make_edited_docx() -> bytes:
    """A contract as Word saves it after a review: nested tables, content controls, tracked changes, a text box."""
    import docx

    document = docx.Document()
    document.add_paragraph("Supply agreement between Acme and Beta.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Prices"
    nested = table.cell(0, 1).add_table(rows=2, cols=2)  # a table inside a cell
    for (row, col), text in {(0, 0): "Item", (0, 1): "Unit price", (1, 0): "Bolt", (1, 1): "EUR 41.50"}.items():
        nested.cell(row, col).text = text
    table.cell(1, 0).text = "Delivery"
    cell = table.cell(1, 1)._tc  # a content control around a cell's paragraph
    cell.remove(cell.p_lst[0])
    cell.append(_xml(f"<w:sdt {W}><w:sdtContent><w:p>{_run('Within 30 days')}</w:p></w:sdtContent></w:sdt>"))
    body = document.element.body
    # A block-level content control, what form templates are made of.
    body.insert(len(body) - 1, _xml(f"<w:sdt {W}><w:sdtContent><w:p>{_run('Contract number: 77-A-2031')}</w:p>"
                                    "</w:sdtContent></w:sdt>"))  # fmt: skip
    # Tracked changes: an insertion is shown, a deletion is not; a moved sentence shows once, where it went.
    body.insert(len(body) - 1, _xml(
        f"<w:p {W}>{_run('Term: ')}<w:del w:id='1' w:author='Legal'>{_run('three years', 'delText')}</w:del>"
        f"<w:ins w:id='2' w:author='Legal'>{_run('five years')}</w:ins>{_run('.')}</w:p>"
    ))  # fmt: skip
    body.insert(len(body) - 1, _xml(
        f"<w:p {W}><w:moveFrom w:id='3' w:author='Legal'>{_run('Notices go to Berlin.')}</w:moveFrom></w:p>"
    ))  # fmt: skip
    # An inline content control and a hyperlink inside a sentence, and a text box Word writes twice
    # (the drawing, then a fallback for old readers).
    body.insert(len(body) - 1, _xml(
        f'<w:p {W} {MC} xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        f"{_run('Signed by ')}<w:sdt><w:sdtContent>{_run('Dana Reyes')}</w:sdtContent></w:sdt>"
        f"<w:hyperlink r:id='rId99'>{_run(' (see register)')}</w:hyperlink>{_run('.')}"
        f"<w:r><mc:AlternateContent><mc:Choice Requires='wps'><w:drawing><w:txbxContent><w:p>{_run('Seal: 5512')}"
        f"</w:p></w:txbxContent></w:drawing></mc:Choice><mc:Fallback><w:pict><w:txbxContent><w:p>"
        f"{_run('Seal: 5512')}</w:p></w:txbxContent></w:pict></mc:Fallback></mc:AlternateContent></w:r></w:p>"
    ))  # fmt: skip
    body.insert(len(body) - 1, _xml(
        f"<w:p {W}><w:moveTo w:id='4' w:author='Legal'>{_run('Notices go to Berlin.')}</w:moveTo></w:p>"
    ))  # fmt: skip
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def test_docx_reads_what_word_shows_nested_tables_content_controls_and_tracked_changes() -> None:
    text = extract_text(make_edited_docx(), filename="agreement.docx").text
    assert text == (
        "Supply agreement between Acme and Beta.\n\n"
        "Prices | Item | Unit price; Bolt | EUR 41.50\nDelivery | Within 30 days\n\n"
        "Contract number: 77-A-2031\n\nTerm: five years.\n\n"
        "Signed by Dana Reyes (see register).\n\nSeal: 5512\n\nNotices go to Berlin."
    )


def test_docx_merged_cells_read_once_across_and_on_every_row_down() -> None:
    import docx

    document = docx.Document()
    table = document.add_table(rows=3, cols=3)
    table.cell(0, 0).merge(table.cell(0, 2)).text = "Schedule A"
    table.cell(1, 0).merge(table.cell(2, 0)).text = "Bolts"
    table.cell(1, 1).text, table.cell(1, 2).text = "M6", "EUR 0.20"
    table.cell(2, 1).text, table.cell(2, 2).text = "M8", "EUR 0.35"
    buffer = io.BytesIO()
    document.save(buffer)
    text = extract_text(buffer.getvalue(), filename="schedule.docx").text
    assert text == "Schedule A\nBolts | M6 | EUR 0.20\nBolts | M8 | EUR 0.35"


def test_html_gives_visible_text() -> None:
    document = extract_text(HTML_PAGE.encode(), mime_type="text/html")
    assert document.format == "html"
    text = document.text
    assert text.startswith("Vault & keys\n\n")
    assert "The vault code is kept here.\nSecond line été." in text
    assert "- first\n\n- second" in text
    assert "Room | Vault" in text
    assert "NEEDLE-0007 is VAULTS." in text
    assert "  keep\n    this" in text
    assert "SCRIPT-ONLY" not in text
    assert "color: red" not in text
    assert "<" not in text
    # Sniffed without a name or type; the page's declared charset is honoured.
    assert detect_format(HTML_PAGE.encode()) == "html"
    latin = '<html><head><meta charset="windows-1252"></head><body><p>caf\xe9</p></body></html>'
    assert extract_text(latin.encode("cp1252"), filename="page.html").text == "café"
    assert html_to_text("<p>a</p><script>b</script><p>c</p>") == "a\n\nc"


# A page as html-minifier writes it with removeOptionalTags: no </head>, <body>, </p>, </li>, </td>,
# </tr> or </html>, unquoted attributes, no whitespace between tags, and an inline SVG icon with a <title>.
MINIFIED_PAGE = (
    "<!doctype html><html lang=en><head><meta charset=utf-8><title>Quarterly report</title>"
    "<link rel=stylesheet href=s.css><script>var t='<p>SCRIPT-ONLY'</script><h1>Results</h1>"
    "<p>Revenue rose 12% to EUR 4.1 million.<p>The CEO, Dana Reyes, steps down in June."
    "<ul><li>North<li>South</ul><table><tr><th>Region<th>Sales<tr><td>North<td>41</table>"
    "<dl><dt>Term<dd>five years</dl><a href=/x><svg viewBox='0 0 8 8'><title>ICON-ONLY</title></svg>Next</a>"
)


def test_html_without_optional_tags_keeps_its_body() -> None:
    # HTML lets a page leave out </head> and <body> (minifiers do): the head ends where the body's
    # content starts, so what follows the <title> is the page's text, not part of a skipped head.
    text = extract_text(MINIFIED_PAGE.encode(), filename="report.html").text
    assert text == (
        "Quarterly report\n\nResults\n\nRevenue rose 12% to EUR 4.1 million.\n\n"
        "The CEO, Dana Reyes, steps down in June.\n\n- North\n\n- South\n\nRegion | Sales\nNorth | 41\n\n"
        "Term\n\nfive years\n\nNext"
    )
    # The CLI and the web page read files through read_document: the same text.
    assert read_document(MINIFIED_PAGE.encode(), "utf-8", "report.html").text == text
    # Text written straight after the head's elements is the body's first paragraph.
    assert html_to_text("<html><head><title>T</title><meta name=x>Loose words<p>More") == "T\n\nLoose words\n\nMore"
    # A <title> inside an icon (or anything else that is not shown) is not the page's title.
    assert html_to_text("<p>a<svg><title>icon</title></svg>b</p>") == "ab"


def test_html_tables_and_lists_keep_their_shape_around_block_content() -> None:
    # Word, Google Docs and CMS exports wrap cell and item text in <p> and <div>, and indent their markup:
    # a row stays one line of `cell | cell`, a table one paragraph (as a DOCX table), an item one bullet.
    exported = """<table>
      <tr>
        <td><p>Region</p></td>
        <td><p>Sales</p></td>
      </tr>
      <tr>
        <td><p>North</p><p>(incl. islands)</p></td>
        <td><div>41</div></td>
      </tr>
    </table>
    <ul><li><p>first point</p></li><li><div>second<br>point</div></li></ul>"""
    assert html_to_text(exported) == (
        "Region | Sales\nNorth (incl. islands) | 41\n\n- first point\n\n- second\npoint"
    )
    # A table in a cell runs on inside it, its rows split by "; " (as in a DOCX).
    nested = (
        "<table><tr><td>Prices</td><td><table><tr><td>Item</td><td>Unit price</td></tr>"
        "<tr><td>Bolt</td><td>EUR 41.50</td></tr></table></td></tr><tr><td>Term</td><td>5 years</td></tr></table>"
    )
    assert html_to_text(f"<p>Before</p>{nested}<p>After</p>") == (
        "Before\n\nPrices | Item | Unit price; Bolt | EUR 41.50\nTerm | 5 years\n\nAfter"
    )
    # A drop-down's options are not the page's text.
    assert html_to_text("<p>Country: <select><option>Austria<option>Belgium</select></p>") == "Country:"


def test_markdown_and_text_are_kept_as_they_are() -> None:
    markdown = "# Title\n\nSome *text* with <b>tags</b>.\n"
    kept = extract_text(markdown.encode(), filename="notes.md")
    assert (kept.format, kept.text) == ("markdown", markdown)
    plain = extract_text("plain text 😀".encode(), mime_type="text/plain")
    assert (plain.format, plain.text, plain.pages) == ("text", "plain text 😀", None)
    with pytest.raises(DocumentError, match="not valid utf-8") as caught:
        extract_text("café".encode("latin-1"), filename="notes.txt")
    assert caught.value.reason == "encoding"


# --- the chat node ---------------------------------------------------------------------------


def chat_app(model: PerfectReader, checkpointer=None, **options):
    builder = StateGraph(DocumentChatState)
    builder.add_node("analyse", create_document_node(model, **options))
    builder.add_edge(START, "analyse")
    builder.add_edge("analyse", END)
    return builder.compile(checkpointer=checkpointer)


def pdf_block(data: bytes) -> dict:
    return {"type": "file", "base64": base64.b64encode(data).decode(), "mime_type": "application/pdf"}


def fact_citation(state: dict) -> dict:
    citations = state["messages"][-1].additional_kwargs["citations"]
    holding = [c for c in citations if FACT in state["document"][c["start"] : c["end"]]]
    assert holding, citations
    return holding[0]


async def test_pdf_attachment_is_answered_with_page_numbers(pdf_bytes: bytes) -> None:
    model = PerfectReader()
    app = chat_app(model, InMemorySaver())
    config = {"configurable": {"thread_id": "pdf"}}
    message = HumanMessage([{"type": "text", "text": "List every NEEDLE code."}, pdf_block(pdf_bytes)])
    state = await app.ainvoke({"messages": [message]}, config)
    reply = state["messages"][-1]
    assert FACT in reply.text
    # The thread's document is the extracted text: the offsets point into it.
    assert state["document"] == extract_text(pdf_bytes).text
    assert "%PDF" not in state["document"]
    citation = fact_citation(state)
    assert citation["page"] <= FACT_PAGE <= citation["last_page"]
    assert reply.response_metadata["citations"] == reply.additional_kwargs["citations"]
    # The stored message holds a reference, not the PDF, and remembers the pages.
    stored = state["messages"][-2]
    assert "base64" not in json.dumps(stored.content)
    assert stored.additional_kwargs["rlm_document"]["format"] == "pdf"
    assert len(stored.additional_kwargs["rlm_document"]["pages"]) == PAGES
    # A follow-up turn, without the attachment, still cites pages.
    state = await app.ainvoke({"messages": [HumanMessage("List every NEEDLE code again.")]}, config)
    assert FACT in state["messages"][-1].text
    citation = fact_citation(state)
    assert citation["page"] <= FACT_PAGE <= citation["last_page"]


async def test_replaced_document_loses_the_old_pages(pdf_bytes: bytes) -> None:
    app = chat_app(PerfectReader(), InMemorySaver())
    config = {"configurable": {"thread_id": "replaced"}}
    first = HumanMessage([{"type": "text", "text": "List every NEEDLE code."}, pdf_block(pdf_bytes)])
    await app.ainvoke({"messages": [first]}, config)
    text = "NEEDLE-0001 is PLAIN. " * 10
    state = await app.ainvoke({"messages": [HumanMessage("List every NEEDLE code.")], "document": text}, config)
    assert "NEEDLE-0001 is PLAIN" in state["messages"][-1].text
    assert all("page" not in c for c in state["messages"][-1].additional_kwargs["citations"])


async def test_docx_and_html_attachments_are_read(frankenstein: str) -> None:
    model = PerfectReader()
    docx_data = base64.b64encode(make_docx(frankenstein)).decode()
    data_url = f"data:{DOCX_MIME_TYPE};base64,{docx_data}"
    openai_part = {"type": "file", "file": {"filename": "report.docx", "file_data": data_url}}
    question = {"type": "text", "text": "Codes?"}
    state = await chat_app(model).ainvoke({"messages": [HumanMessage([question, openai_part])]})
    assert FACT in state["messages"][-1].text
    assert state["document"].startswith("Quarterly report")
    html = {"type": "file", "base64": base64.b64encode(HTML_PAGE.encode()).decode(), "mime_type": "text/html"}
    state = await chat_app(model).ainvoke({"messages": [HumanMessage([question, html])]})
    assert FACT in state["messages"][-1].text
    assert "SCRIPT-ONLY" not in state["document"]
    assert "<p>" not in state["document"]


def test_citations_of_joined_files_name_the_file_and_its_own_pages() -> None:
    minutes = ExtractedDocument("p1 text\n\np2 text", "pdf", (Page(0, 7, 1), Page(9, 16, 2)), name="scan.pdf")
    notes = ExtractedDocument("a note", "text", name="notes.txt")
    annex = ExtractedDocument("q1 text", "pdf", (Page(0, 7, 1),), name="scan.pdf")  # same name, other file
    joined = combine_documents([minutes, notes, annex])

    def cite(start: int, end: int) -> dict:
        cited = joined.cite({"start": start, "end": end})
        return {key: value for key, value in cited.items() if key not in {"start", "end"}}

    def span(text: str) -> tuple[int, int]:
        return joined.text.index(text), joined.text.index(text) + len(text)

    assert cite(*span("p2 text")) == {"file": "scan.pdf", "page": 2, "last_page": 2}
    assert cite(*span("a note")) == {"file": "notes.txt"}  # between two PDFs, on no page
    assert cite(*span("q1 text")) == {"file": "scan.pdf", "page": 1, "last_page": 1}
    assert cite(*span("\n\np2 text\n\n")) == {"file": "scan.pdf", "page": 2, "last_page": 2}  # blank ends
    assert cite(*span("p1 text\n\np2")) == {"file": "scan.pdf", "page": 1, "last_page": 2}
    # Across files, pages restart: no page range, and both files are named (one name, two files).
    assert cite(span("p2")[0], span("q1")[1]) == {"file": "scan.pdf", "last_file": "scan.pdf"}
    # One file: no file name, pages as before.
    assert minutes.cite({"start": 9, "end": 16}) == {"start": 9, "end": 16, "page": 2, "last_page": 2}


def file_block(data: bytes, mime_type: str, filename: str) -> dict:
    return {"type": "file", "base64": base64.b64encode(data).decode(), "mime_type": mime_type, "filename": filename}


async def test_several_attachments_of_mixed_kinds_cite_their_file_and_its_own_pages(frankenstein: str) -> None:
    # A PDF, a text file, another PDF, an HTML page and a Word file in one message: each citation
    # names its file, and a page number only on a PDF's page, counted within that PDF.
    facts = {
        "minutes.pdf": ("NEEDLE-0101 is MINUTES", 2),
        "notes.txt": ("NEEDLE-0102 is QUASAR", None),
        "annex.pdf": ("NEEDLE-0103 is ANNEXED", 1),
        "page.html": ("NEEDLE-0104 is WEBBED", None),
        "memo.docx": ("NEEDLE-0105 is WORDED", None),
    }
    import docx

    memo = docx.Document()
    memo.add_paragraph(f"{facts['memo.docx'][0]}.")
    memo_bytes = io.BytesIO()
    memo.save(memo_bytes)
    blocks = [
        {"type": "text", "text": "List every NEEDLE code."},
        file_block(make_pdf(frankenstein, 3, 2, facts["minutes.pdf"][0]), "application/pdf", "minutes.pdf"),
        file_block(f"Typed up afterwards.\n\n{facts['notes.txt'][0]}.\n".encode(), "text/plain", "notes.txt"),
        file_block(make_pdf(frankenstein[9000:], 2, 1, facts["annex.pdf"][0]), "application/pdf", "annex.pdf"),
        file_block(f"<h1>Page</h1><p>{facts['page.html'][0]}.".encode(), "text/html", "page.html"),
        file_block(memo_bytes.getvalue(), DOCX_MIME_TYPE, "memo.docx"),
    ]
    model = PerfectReader()
    app = chat_app(model, InMemorySaver(), graph=create_rlm_graph(model, part_tokens=1024, cache=False))
    config = {"configurable": {"thread_id": "mixed"}}

    def check(state: dict) -> None:
        citations = state["messages"][-1].additional_kwargs["citations"]
        for name, (fact, page) in facts.items():
            assert fact in state["messages"][-1].text
            holding = [c for c in citations if fact in state["document"][c["start"] : c["end"]]]
            assert holding, (name, citations)
            holding.sort(key=lambda c: c["end"] - c["start"])
            assert holding[0]["file"] == name
            if page is None:
                assert "page" not in holding[0], holding[0]
            else:
                assert holding[0].get("page") == holding[0].get("last_page") == page, holding

    state = await app.ainvoke({"messages": [HumanMessage(blocks)]}, config)
    check(state)
    # The stored message says where each file lies in the joined text, so a follow-up cites the same way.
    summary = state["messages"][-2].additional_kwargs["rlm_document"]
    assert [name for _, _, name in summary["files"]] == list(facts)
    state = await app.ainvoke({"messages": [HumanMessage("List every NEEDLE code again.")]}, config)
    check(state)


async def test_scanned_pdf_attachment_gets_a_clear_reply() -> None:
    model = PerfectReader()
    message = HumanMessage([{"type": "text", "text": "What is the code?"}, pdf_block(make_scanned_pdf())])
    state = await chat_app(model).ainvoke({"messages": [message]})
    assert "scanned PDF without a text layer" in state["messages"][-1].text
    assert model.prompts == []
    translated = chat_app(model, document_messages={"scanned": "Das PDF ist gescannt."})
    state = await translated.ainvoke({"messages": [message]})
    assert state["messages"][-1].text == "Das PDF ist gescannt."


def test_split_message_returns_extracted_text(pdf_bytes: bytes) -> None:
    text, documents, unsupported = split_message(HumanMessage([{"type": "text", "text": "Q?"}, pdf_block(pdf_bytes)]))
    assert (text, unsupported) == ("Q?", [])
    assert FACT in documents[0]
    parts = read_message(HumanMessage([pdf_block(make_scanned_pdf()), {"type": "image", "base64": "AAAA"}]))
    assert [problem.reason for problem in parts.problems] == ["scanned"]
    assert parts.unsupported == ["image"]
    raw_html = {"type": "file", "data": HTML_PAGE, "mime_type": "text/html"}  # not base64: the markup itself
    assert split_message(HumanMessage([raw_html]))[1] == [html_to_text(HTML_PAGE)]
    empty_zip = base64.b64encode(b"PK\x05\x06" + bytes(18)).decode()
    zipped = {"type": "file", "base64": empty_zip, "mime_type": "application/zip"}
    assert split_message(HumanMessage([zipped]))[2] == ["application/zip"]


# --- the CLI ---------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"OPENAI_API_KEY", "OPENAI_BASE_URL"}}
    command = [sys.executable, "-m", "rlm_graph.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=clean, timeout=300, check=False)


def test_cli_reads_a_pdf_and_prints_pages(tmp_path: Path, pdf_bytes: bytes) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf_bytes)
    result = run_cli("ask", str(path), "What is NEEDLE-0007?", "--context-window", "4096")
    assert result.returncode == 0, result.stderr
    assert "VAULTS" in result.stdout.splitlines()[0]
    assert f"Read {path} as PDF: 12 pages" in result.stderr
    cited = [line for line in result.stdout.splitlines() if line.startswith("[") and "VAULTS" in line]
    assert cited, result.stdout
    assert "page" in cited[0]
    as_json = run_cli("ask", str(path), "What is NEEDLE-0007?", "--json", "--context-window", "4096")
    assert as_json.returncode == 0, as_json.stderr
    payload = json.loads(as_json.stdout)
    document = payload["document"]
    assert document["format"] == "pdf"
    assert len(document["pages"]) == PAGES
    holding = [c for c in payload["citations"] if "VAULTS" in document["text"][c["start"] : c["end"]]]
    assert holding
    assert holding[0]["page"] <= FACT_PAGE <= holding[0]["last_page"]


def test_cli_reads_docx_and_html(tmp_path: Path, frankenstein: str) -> None:
    docx_path = tmp_path / "report.docx"
    docx_path.write_bytes(make_docx(frankenstein))
    result = run_cli("ask", str(docx_path), "What is NEEDLE-0007?")
    assert result.returncode == 0, result.stderr
    assert "VAULTS" in result.stdout
    html_path = tmp_path / "page.html"
    html_path.write_text(HTML_PAGE, encoding="utf-8")
    result = run_cli("ask", str(html_path), "What is NEEDLE-0007?", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert "VAULTS" in payload["answer"]
    assert payload["document"]["format"] == "html"
    assert "SCRIPT-ONLY" not in payload["document"]["text"]


def test_cli_refuses_a_scanned_pdf_and_other_binaries(tmp_path: Path) -> None:
    scan = tmp_path / "scan.pdf"
    scan.write_bytes(make_scanned_pdf())
    result = run_cli("ask", str(scan), "What is the code?")
    assert result.returncode == 2
    assert "scanned PDF without a text layer" in result.stderr
    assert "Traceback" not in result.stderr
    archive = tmp_path / "data.zip"
    archive.write_bytes(b"PK\x03\x04" + bytes(40))
    result = run_cli("ask", str(archive), "What?")
    assert result.returncode == 2
    assert "ZIP archive" in result.stderr


# --- the web API -----------------------------------------------------------------------------


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    testclient = pytest.importorskip("starlette.testclient")
    from examples.web.app import create_app

    return testclient.TestClient(create_app())


def test_web_upload_of_a_pdf_returns_its_text_and_cites_pages(client, pdf_bytes: bytes) -> None:
    reply = client.post("/api/documents", files={"file": ("report.pdf", pdf_bytes, "application/pdf")})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["format"] == "pdf"
    assert body["text"] == extract_text(pdf_bytes).text
    assert body["chars"] == len(body["text"])
    assert len(body["pages"]) == PAGES
    events = client.get("/api/ask", params={"doc": body["id"], "q": "What is NEEDLE-0007?"}).text
    result = json.loads(events.split("event: result\ndata: ")[1].split("\n")[0])
    assert "VAULTS" in result["answer"]
    holding = [c for c in result["citations"] if "VAULTS" in body["text"][c["start"] : c["end"]]]
    assert holding
    assert holding[0]["page"] <= FACT_PAGE <= holding[0]["last_page"]


def test_web_upload_of_docx_html_and_a_scan(client, frankenstein: str) -> None:
    reply = client.post("/api/documents", files={"file": ("report.docx", make_docx(frankenstein), DOCX_MIME_TYPE)})
    assert reply.status_code == 200, reply.text
    assert reply.json()["format"] == "docx"
    assert FACT in reply.json()["text"]
    reply = client.post("/api/documents", files={"file": ("page.html", HTML_PAGE.encode(), "text/html")})
    assert reply.status_code == 200, reply.text
    assert "SCRIPT-ONLY" not in reply.json()["text"]
    reply = client.post("/api/documents", files={"file": ("scan.pdf", make_scanned_pdf(), "application/pdf")})
    assert reply.status_code == 415
    assert "scanned PDF without a text layer" in reply.json()["error"]
    # Pasted text stays text, even when it looks like HTML (it is sent as text/plain).
    pasted = "<!doctype html><p>a pasted page</p>"
    reply = client.post("/api/documents", json={"text": pasted})
    assert reply.status_code == 200, reply.text
    assert reply.json()["chars"] == len(pasted)
    assert "text" not in reply.json()
    # Plain text is still not echoed: the page keeps the text it sent.
    reply = client.post("/api/documents", files={"file": ("notes.txt", b"plain words", "text/plain")})
    assert "text" not in reply.json()


def _turns_at_each_page(monkeypatch: pytest.MonkeyPatch, turns: LoopTurns) -> set[int]:
    """The loop turns at which PDF pages are extracted (filled in as pages are)."""
    from pypdf import PageObject

    seen: set[int] = set()
    extract = PageObject.extract_text

    def noting_turn(page: PageObject, *args: object, **kwargs: object) -> str:
        seen.add(turns.now)
        return extract(page, *args, **kwargs)

    monkeypatch.setattr(PageObject, "extract_text", noting_turn)
    return seen


async def test_an_async_turn_extracts_a_pdf_page_by_page_giving_the_loop_back(
    frankenstein: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long PDF is seconds of Python to extract (6 to 7 ms a page here); the async chat
    # node did it in one go on the event loop, holding every other stream of the service.
    pages = 20
    data = make_pdf(frankenstein, pages=pages, fact_page=3)
    turns = LoopTurns()
    seen = _turns_at_each_page(monkeypatch, turns)
    app = chat_app(PerfectReader())
    message = HumanMessage([{"type": "text", "text": "List every NEEDLE code."}, pdf_block(data)])
    async with turns:
        state = await app.ainvoke({"messages": [message]})
    assert FACT in state["messages"][-1].text
    assert len(seen) >= pages  # the loop turned between pages


async def test_the_web_upload_extracts_a_pdf_page_by_page_giving_the_loop_back(
    frankenstein: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The example server's upload handler is async: extracting in one go held every
    # other request (a chat stream, a progress stream) for the whole PDF.
    import httpx

    from examples.web.app import create_app

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    pages = 20
    data = make_pdf(frankenstein, pages=pages, fact_page=5)
    turns = LoopTurns()
    seen = _turns_at_each_page(monkeypatch, turns)
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://page") as client, turns:
        reply = await client.post("/api/documents", files={"file": ("r.pdf", data, "application/pdf")})
    assert reply.status_code == 200, reply.text
    assert len(reply.json()["pages"]) == pages
    assert len(seen) >= pages
