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
from collections.abc import Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from itertools import accumulate
from typing import Any, Literal

from rlm_graph.steps import Steps, run_steps

__all__ = [
    "DEFAULT_DOCUMENT_MESSAGES", "DOCX_MIME_TYPE", "DocumentError", "DocumentFormat", "ExtractedDocument", "Page",
    "detect_format", "extract_text", "extract_text_in_steps", "html_to_text", "normalize_text",
]  # fmt: skip

DocumentFormat = Literal["pdf", "docx", "html", "markdown", "text"]
DOCX_MIME_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

DEFAULT_DOCUMENT_MESSAGES: dict[str, str] = {
    "scanned": "{name} is a scanned PDF without a text layer ({pages} page(s) of images, no text to read). "
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
class ExtractedDocument:
    """A document's text, which citation offsets refer to, and where its pages lie in it."""

    text: str
    format: DocumentFormat
    pages: tuple[Page, ...] | None = None
    """PDF pages in order (numbered from 1); ``None`` for formats without pages."""

    def page_at(self, offset: int) -> int | None:
        """The number of the page holding character ``offset`` (``None`` without pages)."""
        index = bisect_right([page.start for page in self.pages or ()], offset) - 1
        # Before the first page, or past the last one (text joined after a PDF), is on no page.
        if not self.pages or index < 0 or (index == len(self.pages) - 1 and offset > self.pages[-1].end):
            return None
        return self.pages[index].number

    def cite(self, citation: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``citation`` (``start``/``end`` offsets) with ``page`` and ``last_page`` if it is on pages."""
        first = self.page_at(citation["start"])
        last = self.page_at(max(citation["start"], citation["end"] - 1))
        if first is None or last is None:
            return dict(citation)
        return {**citation, "page": first, "last_page": last}


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


_SKIPPED = frozenset({"script", "style", "template", "noscript", "svg", "head"})
_BLOCKS = frozenset(
    {"address", "article", "aside", "blockquote", "caption", "dd", "details", "div", "dl", "dt", "fieldset"}
    | {"figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main"}
    | {"nav", "ol", "p", "pre", "section", "summary", "table", "title", "tr", "ul"}
)


class _TextParser(HTMLParser):
    """Collects visible text: blocks become paragraphs, runs of spaces one space (except in ``<pre>``)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.line: list[str | None] = []
        self.skipping = 0
        self.pre = 0
        self.in_title = False

    def flush(self) -> None:
        # ``None`` marks a <br>: a line break in the paragraph; other whitespace collapses (except in <pre>).
        text = "".join("\x00" if piece is None else piece for piece in self.line)
        if self.pre:
            text = text.replace("\x00", "\n").strip("\n")
        else:
            text = "\n".join(filter(None, (" ".join(part.split()) for part in text.split("\x00"))))
        if text.strip():
            self.blocks.append(text)
        self.line = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True  # inside <head>, which is otherwise skipped
        elif tag in _SKIPPED:
            self.skipping += 1
        elif tag == "br":
            self.line.append(None)
        elif tag in {"td", "th"}:
            self.line.append(" | " if self.line else "")
        elif tag in _BLOCKS:
            self.flush()
            self.pre += tag == "pre"
            self.line.extend(["- "] if tag == "li" else [])

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
            self.flush()
        elif tag in _SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCKS:
            self.flush()
            self.pre -= tag == "pre" and self.pre > 0

    def handle_data(self, data: str) -> None:
        if self.in_title or not self.skipping:
            self.line.append(data)


def html_to_text(html: str) -> str:
    """The visible text of an HTML page, as paragraphs (title and blocks); scripts, styles and markup dropped."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    parser.flush()
    return "\n\n".join(parser.blocks)


def _message(messages: Mapping[str, str], reason: str, kind: DocumentFormat, **fields: Any) -> DocumentError:
    return DocumentError(messages[reason].format(format=_FORMAT_NAMES[kind], **fields), reason, kind)


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


def _docx(data: bytes, name: str, messages: Mapping[str, str]) -> ExtractedDocument:
    try:
        import docx
        from docx.table import Table
    except ImportError:
        raise _message(messages, "missing_extra", "docx", package="python-docx") from None
    try:
        document = docx.Document(io.BytesIO(data))
        blocks: list[str] = []
        # Paragraphs and tables in the order they appear in the body.
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                grid = [[" ".join(cell.text.split()) for cell in row.cells] for row in item.rows]
                # Merged cells repeat their text in each grid cell: keep it once. A table is one paragraph.
                rows = (" | ".join(c for i, c in enumerate(cells) if i == 0 or c != cells[i - 1]) for cells in grid)
                table = "\n".join(row for row in rows if row.strip(" |"))
                blocks.extend([table] if table else [])
            elif item.text.strip():
                blocks.append(item.text.strip())
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
