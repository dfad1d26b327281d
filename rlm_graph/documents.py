"""Text out of the documents people have: PDF, DOCX, HTML, Markdown and plain text.

Citations are offsets into the text the graph read: for a PDF, DOCX or HTML file,
:attr:`ExtractedDocument.text`, which callers must keep (and show) with the answer.
A PDF's page ranges are kept too, so citations can name pages. PDF and DOCX need the
``documents`` extra (pypdf, python-docx); HTML is read with the standard library.
"""

from __future__ import annotations

import io
import re
import zipfile
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from itertools import accumulate
from typing import Any, Literal

from rlm_graph.progress import format_message
from rlm_graph.steps import Steps, run_steps

__all__ = [
    "DEFAULT_DOCUMENT_MESSAGES", "DOCX_MIME_TYPE", "DocumentError", "DocumentFormat", "ExtractedDocument", "Page",
    "Source", "detect_format", "extract_text", "extract_text_in_steps", "html_to_text", "normalize_text",
]  # fmt: skip

DocumentFormat = Literal["pdf", "docx", "html", "markdown", "text"]
DOCX_MIME_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

DEFAULT_DOCUMENT_MESSAGES: dict[str, str] = {
    "scanned": "{name} is a scanned PDF without a text layer ({pages} {pages:page|pages} of images, no text to read). "
    "Run text recognition on it first (for example: ocrmypdf --sidecar out.txt in.pdf out.pdf) and send the text.",
    "encrypted": "{name} is a password-protected PDF; remove the password and send it again.",
    "damaged": "{name} could not be read as {format}: {detail}",
    "empty": "{name} holds no text.",
    "missing_extra": "{format} files need the documents extra: pip install \"rlm-graph[documents]\" ({package}).",
    "encoding": "{name} is not valid {encoding} text; save it as {encoding} first.",
}
"""Messages of :class:`DocumentError` by reason; pass ``messages=`` to translate them.

Fields: ``{name}`` (the file), ``{format}`` (``PDF``, ``DOCX``...), ``{pages}``,
``{detail}`` (the library's own words), ``{package}`` and ``{encoding}``."""

_FORMAT_NAMES = {"pdf": "PDF", "docx": "DOCX", "html": "HTML", "markdown": "Markdown", "text": "text"}
_EXTENSIONS: dict[str, DocumentFormat] = {".pdf": "pdf", ".docx": "docx", ".html": "html", ".htm": "html"}
_EXTENSIONS |= {".xhtml": "html", ".md": "markdown", ".markdown": "markdown"}
_EXTENSIONS |= dict.fromkeys((".txt", ".text", ".csv", ".tsv", ".json", ".xml", ".rst", ".log"), "text")
_MIME_TYPES: dict[str, DocumentFormat] = {"application/pdf": "pdf", DOCX_MIME_TYPE: "docx", "text/html": "html"}
_MIME_TYPES |= {"application/xhtml+xml": "html", "text/markdown": "markdown", "text/x-markdown": "markdown"}
_MIME_TYPES |= dict.fromkeys(("application/json", "application/xml", "application/csv"), "text")


def normalize_text(text: str) -> str:
    r"""A decoded text as citation offsets count it: leading byte-order mark removed, line ends made ``\n``.

    The one rule of every surface (the CLI, the examples, the web page, chat attachments,
    the evaluation): offsets are code points of the text as decoded, without a leading
    U+FEFF, with each CRLF and each lone CR read as one LF. It is what Python's
    ``open(path, encoding="utf-8-sig").read()`` gives, and what a browser's text box holds
    when the same text is pasted, so a file and its paste are cited alike. Line and column
    numbers are not changed by it.

    Args:
        text: Text as decoded from a file's bytes.

    Returns:
        The text the graph reads and citations refer to.
    """
    text = text.removeprefix("\ufeff")
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


class DocumentError(ValueError):
    """A document whose text cannot be extracted; the message says why and what to do.

    Attributes:
        reason: A key of :data:`DEFAULT_DOCUMENT_MESSAGES` (``"scanned"``, ``"encrypted"``...).
        format: The document's format, when known (``"pdf"``, ``"docx"``...).
    """

    def __init__(self, message: str, reason: str, format: DocumentFormat | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.format = format


@dataclass(frozen=True)
class Page:
    """One PDF page's characters in the extracted text: ``text[start:end]``."""

    start: int
    end: int
    number: int


@dataclass(frozen=True)
class Source:
    """One file's characters in a text joined from several files: ``text[start:end]``."""

    start: int
    end: int
    name: str


def _containing(spans: Sequence[Page] | Sequence[Source] | None, offset: int) -> Any:
    """The span holding character ``offset`` (starts sorted, spans apart), or ``None`` between or outside them."""
    index = bisect_right([span.start for span in spans or ()], offset) - 1
    # Each span is checked against its own end: text between two spans (another file joined
    # between two PDFs, the blank line between pages) is in neither.
    return spans[index] if spans and index >= 0 and offset < spans[index].end else None


@dataclass(frozen=True)
class ExtractedDocument:
    """A document's text, which citation offsets refer to, and where its pages (and files) lie in it."""

    text: str
    format: DocumentFormat
    pages: tuple[Page, ...] | None = None
    """PDF pages in order, numbered from 1 within their file; ``None`` for formats without pages."""
    name: str | None = None
    """The file's name, when known."""
    sources: tuple[Source, ...] | None = None
    """Where each file lies, when the text joins several (attachments of one message); else ``None``."""

    def page_at(self, offset: int) -> int | None:
        """The number of the page holding character ``offset`` (``None`` when it is on no page)."""
        page = _containing(self.pages, offset)
        return None if page is None else page.number

    def source_at(self, offset: int) -> str | None:
        """The name of the file holding character ``offset`` (``None`` for a text of one file)."""
        source = _containing(self.sources, offset)
        return None if source is None else source.name

    def cite(self, citation: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``citation`` (``start``/``end`` offsets) that says where it lies.

        With several files joined, ``file`` names the file of its first character (and
        ``last_file`` that of its last, when another). On a PDF's pages, ``page`` and
        ``last_page`` number them within that PDF; a citation that leaves the PDF has none.
        """
        start, end = citation["start"], citation["end"]
        span = self.text[start:end]
        # Whitespace at the ends (the blank line between two pages or files) does not move a citation.
        first = start + len(span) - len(span.lstrip())
        last = max(first, start + len(span.rstrip()) - 1)
        cited = dict(citation)
        first_file, last_file = _containing(self.sources, first), _containing(self.sources, last)
        if first_file is not None:
            cited["file"] = first_file.name
            if last_file is not None and last_file is not first_file:
                cited["last_file"] = last_file.name
        first_page, last_page = self.page_at(first), self.page_at(last)
        # Page numbers restart in each file: a span across two files has no page range.
        if first_page is not None and last_page is not None and first_file is last_file:
            cited |= {"page": first_page, "last_page": last_page}
        return cited


def detect_format(data: bytes, mime_type: str | None = None, filename: str | None = None) -> DocumentFormat | None:
    """Tell a document's format from its bytes, then its mime type, then its file name.

    Args:
        data: The file's bytes.
        mime_type: The mime type the sender gave, if any.
        filename: The file name, if any.

    Returns:
        The format, or ``None`` when nothing says (the caller decides whether to read it as text).
    """
    start = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n")
    if start.startswith(b"%PDF-"):
        return "pdf"
    if start.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                return "docx" if "word/document.xml" in archive.namelist() else None
        except zipfile.BadZipFile:  # a truncated or mislabelled archive: binary, not a document
            return None
    mime = (mime_type or "").split(";")[0].strip().lower()
    by_name = next((kind for ext, kind in _EXTENSIONS.items() if (filename or "").lower().endswith(ext)), None)
    by_type = _MIME_TYPES.get(mime) or ("text" if mime.startswith("text/") else None)
    kind = by_type if by_type not in {None, "text"} else by_name or by_type
    if kind is None and start[:14].lower().startswith((b"<!doctype html", b"<html")):
        return "html"
    # A mime type or name claiming PDF or DOCX whose bytes are not one is left to the extractor to report.
    return kind


# Elements whose content a browser does not show as text. <head> is not one of them: its end tag
# (and <body>'s start tag) may be left out, as minifiers do, and the head then ends where the first
# content starts. Its only text-bearing child, <title>, is kept; the others are empty or listed here.
_SKIPPED = frozenset({"script", "style", "template", "noscript", "svg", "math", "iframe", "select", "datalist"})
_BLOCKS = frozenset(
    {"address", "article", "aside", "blockquote", "caption", "dd", "details", "div", "dl", "dt", "fieldset"}
    | {"figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main"}
    | {"nav", "ol", "p", "pre", "section", "summary", "title", "ul"}
)


@dataclass
class _Table:
    """An open ``<table>``: whether a cell of it is open, and how many rows and cells (in the row) began."""

    in_cell: bool = False
    rows: int = 0
    cells: int = 0


class _TextParser(HTMLParser):
    """Collects visible text: blocks become paragraphs, runs of spaces one space (except in ``<pre>``).

    The standard library's tokenizer is enough here, with no tree: the text comes out in
    document order, and every block start and end is a paragraph break whether or not the
    page wrote its (optional) end tags, which is what a browser's implied end tags amount to
    for text. A table is one paragraph, a line per row, `` | `` between cells (as a DOCX
    table); inside a cell, blocks are only spaces and a nested table's rows are split by
    ``; ``, so that exported pages (``<td><p>...</p></td>``) keep their rows.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.line: list[str | None] = []
        self.skipping = 0
        self.pre = 0
        self.tables: list[_Table] = []

    @property
    def in_cell(self) -> bool:
        return any(table.in_cell for table in self.tables)

    def has_text(self) -> bool:
        """Whether the paragraph so far holds more than whitespace and a list item's bullet."""
        return "".join(piece for piece in self.line if piece).strip() not in {"", "-"}

    def flush(self) -> None:
        # ``None`` marks a line break (<br>, a table row); other whitespace collapses (except in <pre>).
        text = "".join("\x00" if piece is None else piece for piece in self.line)
        if self.pre:
            text = text.replace("\x00", "\n").strip("\n")
        else:
            text = "\n".join(filter(None, (" ".join(part.split()) for part in text.split("\x00"))))
        if text.strip():
            self.blocks.append(text)
        self.line = []

    def block(self) -> None:
        """A block starts or ends: a paragraph break, a space inside a table cell."""
        if self.in_cell:
            self.line.append(" ")
        elif self.has_text():
            self.flush()

    def table_tag(self, tag: str) -> None:
        if tag == "table":
            if self.in_cell:
                self.line.append(" ")  # a table in a cell runs on inside it
            else:
                self.flush()
            self.tables.append(_Table())
            return
        if not self.tables:  # a row or cell outside any table: a line of its own
            self.tables.append(_Table())
        table = self.tables[-1]
        if tag == "tr":
            nested = any(outer.in_cell for outer in self.tables[:-1])
            if table.rows:
                self.line.append("; " if nested else None)
            table.rows += 1
            table.cells = 0
            table.in_cell = False
        else:  # td, th
            if table.cells:
                self.line.append(" | ")
            table.cells += 1
            table.in_cell = True

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self.skipping += 1
        elif self.skipping:
            return  # markup inside what is not shown (an icon's <title>, a <noscript> fallback)
        elif tag in {"table", "tr", "td", "th"}:
            self.table_tag(tag)
        elif tag == "br":
            self.line.append(" " if self.in_cell else None)
        elif tag == "li" and not self.in_cell:
            self.block()
            self.line = ["- "]  # an empty item before leaves no bullet of its own
        elif tag in _BLOCKS:
            self.block()
            self.pre += tag == "pre"

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif self.skipping:
            return
        elif tag == "table":
            if self.tables:
                self.tables.pop()
            if self.in_cell:
                self.line.append(" ")
            else:
                self.flush()
        elif tag in {"td", "th"} and self.tables:
            self.tables[-1].in_cell = False
        elif tag in _BLOCKS:
            self.block()
            self.pre -= tag == "pre" and self.pre > 0

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.line.append(data)


def html_to_text(html: str) -> str:
    """The visible text of an HTML page, as paragraphs (title and blocks); scripts, styles and markup dropped."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    parser.flush()
    return "\n\n".join(parser.blocks)


def _message(messages: Mapping[str, str], reason: str, kind: DocumentFormat, **fields: Any) -> DocumentError:
    # format_message: "1 page" and "2 pages" ({pages:page|pages}); unknown fields stay as written.
    text = format_message(messages, reason, format=_FORMAT_NAMES[kind], **fields)
    return DocumentError(text, reason, kind)


def _pdf(data: bytes, name: str, messages: Mapping[str, str]) -> Steps[ExtractedDocument]:
    try:
        from pypdf import PdfReader
    except ImportError:
        raise _message(messages, "missing_extra", "pdf", package="pypdf") from None
    texts: list[str] = []
    try:
        reader = PdfReader(io.BytesIO(data))
        locked = reader.is_encrypted and not reader.decrypt("")  # many PDFs are encrypted with an empty password
        for page in [] if locked else reader.pages:
            texts.append(page.extract_text() or "")
            yield  # a page at a time: a long PDF is seconds of Python
    except Exception as exc:  # a broken file makes pypdf raise many kinds of error
        if "decrypt" not in str(exc).lower() and "cryptography" not in str(exc).lower():
            raise _message(messages, "damaged", "pdf", name=name, detail=str(exc) or type(exc).__name__) from exc
        locked, texts = True, []
    if locked:
        raise _message(messages, "encrypted", "pdf", name=name)
    if not texts:
        raise _message(messages, "damaged", "pdf", name=name, detail="it has no pages")
    if not any(text.strip() for text in texts):
        raise _message(messages, "scanned", "pdf", name=name, pages=len(texts))
    texts = [text.strip() for text in texts]
    # Pages are joined by a blank line: a page break is a paragraph break for the splitter.
    starts = [0, *accumulate(len(text) + 2 for text in texts[:-1])]
    pages = tuple(Page(s, s + len(t), n) for n, (s, t) in enumerate(zip(starts, texts, strict=True), 1))
    return ExtractedDocument("\n\n".join(texts), "pdf", pages)


_WORD = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
# Text Word does not show: deleted or moved-away revisions, field codes (their result is shown),
# and the copy of a drawing kept for readers that cannot draw it (mc:Fallback).
_DOCX_HIDDEN = frozenset(
    {f"{_WORD}{name}" for name in ("del", "moveFrom", "delText", "instrText", "rPr", "pPr", "sdtPr")} | {_FALLBACK}
)
_DOCX_CHARACTERS = {f"{_WORD}tab": "\t", f"{_WORD}br": "\n", f"{_WORD}cr": "\n", f"{_WORD}noBreakHyphen": "-"}


def _docx_inline(element: Any, pieces: list[str], boxes: list[str]) -> None:
    """A paragraph's shown text into ``pieces``; the text of its text boxes into ``boxes``."""
    for child in element:
        tag = child.tag
        if tag == f"{_WORD}t":
            pieces.append(child.text or "")
        elif tag in _DOCX_CHARACTERS:
            pieces.append(_DOCX_CHARACTERS[tag])
        elif tag == f"{_WORD}txbxContent":
            boxes.extend(_docx_blocks(child, nested=False))
        elif tag not in _DOCX_HIDDEN and isinstance(tag, str):
            # Runs, tracked insertions (w:ins, w:moveTo), content controls (w:sdt), hyperlinks,
            # fields, smart tags: containers whose text Word shows in the sentence.
            _docx_inline(child, pieces, boxes)


def _docx_table(table: Any) -> str:
    """A table as one paragraph: a line per row, `` | `` between cells; a table in a cell, rows split by ``; ``.

    A cell merged down over several rows repeats its text in each (a row reads on its own, as
    python-docx's ``row.cells`` gives it); a cell merged across columns is written once.
    """
    lines = []
    above: dict[int, str] = {}  # text by grid column in the row above, for vertically merged cells
    for row in table.iter(f"{_WORD}tr"):
        if _enclosing_table(row) is not table:
            continue  # a row of a table nested in one of this table's cells
        cells, column, current = [], 0, {}
        for cell in _cells_of(row):
            merge = cell.find(f"{_WORD}tcPr/{_WORD}vMerge")
            if merge is not None and merge.get(f"{_WORD}val", "continue") == "continue":
                text = above.get(column, "")
            else:
                text = " ".join(" ".join(_docx_blocks(cell, nested=True)).split())
            cells.append(text)
            current[column] = text
            span = cell.find(f"{_WORD}tcPr/{_WORD}gridSpan")
            column += int(span.get(f"{_WORD}val", "1")) if span is not None else 1
        above = current
        line = " | ".join(cells).rstrip(" |")
        lines.extend([line] if line else [])
    return "\n".join(lines)


def _enclosing_table(element: Any) -> Any:
    parent = element.getparent()
    while parent is not None and parent.tag != f"{_WORD}tbl":
        parent = parent.getparent()
    return parent


def _cells_of(row: Any) -> list[Any]:
    """A row's cells, also those wrapped in content controls or custom XML (not those of nested tables)."""
    return [cell for cell in row.iter(f"{_WORD}tc") if _enclosing_row(cell) is row]


def _enclosing_row(element: Any) -> Any:
    parent = element.getparent()
    while parent is not None and parent.tag != f"{_WORD}tr":
        parent = parent.getparent()
    return parent


def _docx_blocks(container: Any, *, nested: bool) -> list[str]:
    """The paragraphs and tables of a body, cell, text box or content control, in order, as text blocks."""
    blocks: list[str] = []
    for child in container:
        if child.tag == f"{_WORD}p":
            pieces: list[str] = []
            boxes: list[str] = []
            _docx_inline(child, pieces, boxes)
            text = "".join(pieces).strip()
            blocks.extend([text] if text else [])
            blocks.extend(boxes)
        elif child.tag == f"{_WORD}tbl":
            table = _docx_table(child)
            # In a cell, a nested table's rows run on inside the cell's text.
            blocks.extend([table.replace("\n", "; ") if nested else table] if table else [])
        elif isinstance(child.tag, str) and child.tag not in _DOCX_HIDDEN:
            # Block-level content controls (w:sdt > w:sdtContent), custom XML and tracked
            # insertions of whole paragraphs hold paragraphs and tables of their own.
            blocks.extend(_docx_blocks(child, nested=nested))
    return blocks


def _docx(data: bytes, name: str, messages: Mapping[str, str]) -> ExtractedDocument:
    try:
        import docx
    except ImportError:
        raise _message(messages, "missing_extra", "docx", package="python-docx") from None
    try:
        # python-docx opens the package; the body is walked as XML, because its objects skip text
        # that Word shows: tables nested in cells, content controls and tracked insertions.
        blocks = _docx_blocks(docx.Document(io.BytesIO(data)).element.body, nested=False)
    except Exception as exc:  # python-docx and lxml raise many kinds of error
        raise _message(messages, "damaged", "docx", name=name, detail=str(exc) or type(exc).__name__) from exc
    if not blocks:
        raise _message(messages, "empty", "docx", name=name)
    return ExtractedDocument("\n\n".join(blocks), "docx")


def extract_text(
    data: bytes | str, *, mime_type: str | None = None, filename: str | None = None, encoding: str = "utf-8",
    messages: Mapping[str, str] | None = None,
) -> ExtractedDocument:  # fmt: skip
    """Extract a document's text (citation offsets then refer to it).

    The format is told from the bytes first, then ``mime_type``, then ``filename``.
    HTML gives its visible text; Markdown, text and anything else are read as text.

    Args:
        data: The file's bytes, or its text when it was already decoded.
        mime_type: The mime type the sender gave, if any.
        filename: The file name, if any (also used in messages).
        encoding: Encoding of HTML, Markdown and text given as bytes.
        messages: Message templates by reason, merged over :data:`DEFAULT_DOCUMENT_MESSAGES`.

    Returns:
        The text, its format, and for a PDF its pages' ranges in the text.

    Raises:
        DocumentError: For a scanned PDF (no text layer), a password-protected or
            damaged file, text that does not decode, or a missing ``documents`` extra.
    """
    steps = extract_text_in_steps(data, mime_type=mime_type, filename=filename, encoding=encoding, messages=messages)
    return run_steps(steps)


def extract_text_in_steps(
    data: bytes | str, *, mime_type: str | None = None, filename: str | None = None, encoding: str = "utf-8",
    messages: Mapping[str, str] | None = None,
) -> Steps[ExtractedDocument]:  # fmt: skip
    """:func:`extract_text` (same arguments, result and errors) as steps that pause after each PDF page.

    An async caller runs them on its event loop (:mod:`rlm_graph.steps`), which a long
    PDF would otherwise hold for seconds.
    """
    templates = {**DEFAULT_DOCUMENT_MESSAGES, **(messages or {})}
    name = filename or "the document"
    raw = data.encode("utf-8", errors="surrogatepass") if isinstance(data, str) else data
    kind = detect_format(raw, mime_type, filename) or "text"
    if kind == "pdf":
        return (yield from _pdf(raw, name, templates))
    if kind == "docx":
        return _docx(raw, name, templates)
    # A page may say its own charset (<meta charset="windows-1252">); it wins over the default.
    declared = re.search(rb"""<meta[^>]+charset=["']?([\w.:-]+)""", raw[:4096], re.I) if kind == "html" else None
    try:
        text = data if isinstance(data, str) else data.decode(declared.group(1).decode() if declared else encoding)
    except (UnicodeDecodeError, LookupError):
        raise _message(templates, "encoding", kind, name=name, encoding=encoding) from None
    text = normalize_text(text)
    if kind != "html":
        return ExtractedDocument(text, kind)
    visible = html_to_text(text)
    if not visible.strip():
        raise _message(templates, "empty", "html", name=name)
    return ExtractedDocument(visible, "html")
