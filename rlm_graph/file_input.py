"""Reading a file a user hands over: decode text, extract documents, refuse binaries.

Used by the command line, the examples, the example web page and the evaluation, so all
refuse the same inputs with the same messages, and all cite the same text: offsets count
code points of the text as decoded, without a leading byte-order mark, with CRLF and CR
line ends read as LF (:func:`rlm_graph.documents.normalize_text`).
"""

from __future__ import annotations

import codecs
import os
import sys

from rlm_graph.documents import (
    DocumentError,
    ExtractedDocument,
    detect_format,
    extract_text_in_steps,
    normalize_text,
)
from rlm_graph.steps import Steps, run_steps

__all__ = [
    "BadInputError", "binary_kind", "decode_document", "read_document", "read_document_in_steps", "read_file",
]  # fmt: skip

# Leading bytes of formats people hand to a text tool by mistake; read as text they are noise.
_MAGIC_NUMBERS: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "a PDF document (convert it to text first, for example with pdftotext)"),
    (b"\x7fELF", "an executable program (ELF)"),
    (b"PK\x03\x04", "a ZIP archive (or an .xlsx, .odt or .epub file, which are ZIP archives)"),
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"\x1f\x8b", "a gzip-compressed file (decompress it first)"),
    (b"\xfd7zXZ\x00", "an xz-compressed file (decompress it first)"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Microsoft Office file (.doc, .xls)"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
_SAMPLE_CHARS = 65_536
# Text has tabs and line breaks, and now and then an escape or form feed; binary data
# decoded as text is full of other control characters.
_TEXT_CONTROLS = frozenset("\t\n\r\f\v\x1b")
_MAX_CONTROL_SHARE = 0.02


class BadInputError(Exception):
    """The input cannot be read as text; the message says why and what to do.

    Attributes:
        reason: ``"encoding"`` (unknown name, or the bytes do not decode), ``"binary"``,
            or ``"document"`` (a PDF or DOCX whose text cannot be extracted, such as a scan).
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _magic_kind(raw: bytes) -> str | None:
    return next((kind for magic, kind in _MAGIC_NUMBERS if raw.startswith(magic)), None)


def binary_kind(raw: bytes, text: str) -> str | None:
    """Say what a file is when it is not text.

    Args:
        raw: The file's bytes.
        text: The same bytes decoded (so a UTF-16 file, whose bytes hold NULs, still passes).

    Returns:
        A short description such as ``"a PDF document (...)"``, or ``None`` for text.
    """
    kind = _magic_kind(raw)
    if kind is not None:
        return kind
    sample = text[:_SAMPLE_CHARS]
    if "\x00" in sample:
        return "binary data (it holds NUL bytes)"
    controls = sum(1 for char in sample if (char < " " or char == "\x7f") and char not in _TEXT_CONTROLS)
    if sample and controls / len(sample) > _MAX_CONTROL_SHARE:
        return f"binary data ({controls} control characters in its first {len(sample)} characters)"
    return None


def decode_document(raw: bytes, encoding: str, name: str) -> str:
    """Decode a file's bytes as text, or say clearly why they are not text.

    Args:
        raw: The file's bytes.
        encoding: The encoding the user named (``--encoding``).
        name: The file's name, for messages.

    Returns:
        The text, as citation offsets count it (:func:`rlm_graph.documents.normalize_text`:
        no leading byte-order mark, CRLF and CR line ends read as LF).

    Raises:
        BadInputError: If the encoding is unknown, the bytes do not decode, or they are binary.
    """
    try:
        codecs.lookup(encoding)
    except LookupError:
        msg = f"unknown encoding {encoding!r} (--encoding); try utf-8, latin-1, cp1252 or utf-16"
        raise BadInputError(msg, "encoding") from None
    kind = _magic_kind(raw)
    if kind is not None:
        # Checked before decoding: a PDF should be called a PDF, not "not valid UTF-8".
        msg = f"{name} is {kind}, not a text file; rlm-graph reads plain text"
        raise BadInputError(msg, "binary")
    utf16_hint = ""
    if "16" not in encoding and "32" not in encoding:
        utf16_hint = "; if it is UTF-16 text, pass --encoding utf-16"
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        # Binary data rarely decodes: call it binary rather than blame the encoding.
        kind = binary_kind(raw, raw.decode("latin-1"))
        if kind is not None:
            msg = f"{name} looks like {kind}, not text; rlm-graph reads plain text{utf16_hint}"
            raise BadInputError(msg, "binary") from None
        msg = (
            f"{name} is not valid {encoding}: byte {raw[exc.start]:#04x} at offset {exc.start} does not decode; "
            "pass the file's encoding with --encoding, for example --encoding latin-1 or --encoding cp1252"
        )
        raise BadInputError(msg, "encoding") from None
    kind = binary_kind(raw, text)
    if kind is not None:
        msg = f"{name} looks like {kind}, not text; rlm-graph reads plain text{utf16_hint}"
        raise BadInputError(msg, "binary")
    return normalize_text(text)


def read_file(path: str | os.PathLike[str], encoding: str = "utf-8") -> ExtractedDocument:
    """Read a document from a file (``"-"``: standard input), as every surface of rlm-graph does.

    The one way the CLI, the examples and the evaluation read files, so the same file gets
    the same citation offsets everywhere: PDF, DOCX and HTML are extracted; other files are
    decoded with ``encoding``, a leading byte-order mark removed and line ends read as LF.
    The web page sends the file's bytes to :func:`read_document`, which applies the same rule.

    Args:
        path: The file, or ``"-"`` for standard input.
        encoding: Encoding of text and HTML files.

    Returns:
        The document: ``text`` (what the graph reads and citations refer to), format and pages.

    Raises:
        OSError: If the file cannot be opened.
        BadInputError: As :func:`read_document`.
    """
    if str(path) == "-":
        return read_document(sys.stdin.buffer.read(), encoding, "standard input")
    with open(path, "rb") as handle:
        raw = handle.read()
    return read_document(raw, encoding, str(path))


def read_document(raw: bytes, encoding: str, name: str, mime_type: str | None = None) -> ExtractedDocument:
    """Read a file as a document: PDF, DOCX and HTML extracted, other text decoded, binaries refused.

    Args:
        raw: The file's bytes.
        encoding: Encoding of text and HTML (an HTML page's own ``<meta charset>`` wins).
        name: The file's name: tells HTML or Markdown by extension, and names it in messages.
        mime_type: The mime type the sender gave, if any.

    Returns:
        The text (citation offsets refer to it), its format, and a PDF's pages.

    Raises:
        BadInputError: If the encoding is unknown, the bytes do not decode, they
            are binary, or a PDF or DOCX holds no extractable text (a scan).
    """
    return run_steps(read_document_in_steps(raw, encoding, name, mime_type))


def read_document_in_steps(
    raw: bytes, encoding: str, name: str, mime_type: str | None = None
) -> Steps[ExtractedDocument]:
    """:func:`read_document` (same arguments, result and errors) as steps that pause after each PDF page.

    An async server runs them on its event loop (:func:`rlm_graph.steps.arun_steps`).
    """
    kind = detect_format(raw, mime_type, name)
    if kind in {"pdf", "docx", "html"}:
        try:
            return (yield from extract_text_in_steps(raw, mime_type=mime_type, filename=name, encoding=encoding))
        except DocumentError as exc:
            raise BadInputError(str(exc), "encoding" if exc.reason == "encoding" else "document") from None
    return ExtractedDocument(decode_document(raw, encoding, name), kind if kind == "markdown" else "text")
