"""Relevance indexes over a document's parts, for focused reading.

After RetroInfer (2025): the long context is kept as an index, and what a step needs
is retrieved from it instead of re-read in full. A :class:`Retriever` builds a
:class:`PartIndex` over the texts of a document's parts; the index ranks the parts
for a question. Indexes are kept in an in-memory LRU
(:class:`rlm_graph.index_cache.IndexCache`) keyed by the document's hash and the part
plan, so a follow-up question about the same document reuses the index instead of
rebuilding it.

An async run builds the index on its event loop in slices where the retriever can
(:meth:`BM25Retriever.build_in_steps` counts words part by part), and otherwise in a
thread (a vector store's build is embedding calls).

Two retrievers ship:

- :class:`BM25Retriever` (the default): lexical BM25 (``bm25s``' scoring method and
  stopword list), offline, no embedding model. Install with ``pip install "rlm-graph[retrieval]"``.
- :class:`VectorStoreRetriever`: any LangChain ``Embeddings`` in any LangChain
  ``VectorStore`` (``InMemoryVectorStore`` by default), for example
  ``OpenAIEmbeddings``.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import InMemoryVectorStore, VectorStore

from rlm_graph.bm25 import K1, B, idf, saturation
from rlm_graph.steps import Steps, run_steps

__all__ = [
    "BM25Retriever",
    "PartIndex",
    "Retriever",
    "VectorStoreRetriever",
    "check_retriever",
    "default_retriever",
    "term_spans",
]

_WORD = re.compile(r"\w+", re.UNICODE)
# Words joined by "-", ".", "/" or ":" (ticket and part numbers, versions, dates).
_JOINED = re.compile(r"\w+(?:[-./:]\w+)+", re.UNICODE)
_DIGIT = re.compile(r"\d")


@runtime_checkable
class PartIndex(Protocol):
    """An index over one document's parts."""

    def rank(self, question: str) -> list[int]:
        """Every part's position in the plan, most relevant to ``question`` first."""
        ...


@runtime_checkable
class Retriever(Protocol):
    """Builds a :class:`PartIndex` over the texts of a document's parts."""

    @property
    def identity(self) -> str:
        """Stable text naming the retriever and its settings (part of the index cache key)."""
        ...

    def build(self, texts: Sequence[str]) -> PartIndex:
        """Index the parts' texts (one entry per part, in plan order).

        A retriever may also offer ``build_in_steps(texts)``, the same as steps
        (:mod:`rlm_graph.steps`); :class:`IndexCache` then uses it, so that an async run
        builds the index on its loop in slices instead of in a thread.
        """
        ...


def _complete(order: Sequence[int], count: int) -> list[int]:
    """Keep the first occurrence of each valid position; append unranked parts in document order."""
    seen: set[int] = set()
    ranked = [i for i in order if 0 <= i < count and not (i in seen or seen.add(i))]
    return ranked + [i for i in range(count) if i not in seen]


class _BM25Index:
    """Okapi BM25 over each part's word counts, scored for a question's words when it is asked.

    The scores are bm25s' default method (Lucene's idf, ``log(1 + (N - df + 0.5) / (df + 0.5))``,
    times ``tf / (tf + k1 * (1 - b + b * length / average length))``, summed over the
    question's words, a repeated word counting again), so the ranking is the one a bm25s
    index of the same words gives. Each part's counts are one entry per distinct word
    (numpy arrays, all parts end to end); a question compares its words' ids with them.
    """

    def __init__(
        self, retriever: BM25Retriever, vocabulary: dict[str, int], words: list[Any], counts: list[Any]
    ) -> None:
        import numpy as np

        self._retriever = retriever
        self._vocabulary = vocabulary
        self._count = len(words)
        # 12 bytes an entry (about 23 MB for 10M tokens of English); scores are computed in float64.
        self._words = np.concatenate(words) if words else np.empty(0, dtype=np.int32)
        self._counts = np.concatenate(counts) if counts else np.empty(0, dtype=np.int32)
        self._parts = np.repeat(np.arange(self._count, dtype=np.int32), [len(part) for part in words])
        self._lengths = np.bincount(self._parts, weights=self._counts, minlength=self._count)

    def rank(self, question: str) -> list[int]:
        import numpy as np

        ids = [self._vocabulary[word] for word in self._retriever.tokenize(question) if word in self._vocabulary]
        if not ids:
            return list(range(self._count))
        average = self._lengths.mean() or 1.0
        scores = np.zeros(self._count)
        for word in ids:
            found = self._words == word
            parts, frequencies = self._parts[found], self._counts[found].astype(np.float64)
            weights = saturation(frequencies, self._lengths[parts], average, self._retriever.k1, self._retriever.b)
            # A word has one entry per part, so each part is added to once.
            scores[parts] += idf(self._count, len(parts)) * weights
        # Stable: equal scores keep document order, so a question with no matching
        # words reads the document from the start.
        return np.argsort(-scores, kind="stable").tolist()


class BM25Retriever:
    """Lexical BM25 ranking (``bm25s``' default scoring, from each part's word counts); offline, no embedding model.

    Words are lower-cased runs of letters and digits (any script); English stopwords
    (bm25s' 179-word list, NLTK's) are dropped so that "what", "does" and the like do not
    decide the ranking: in a handful of parts they are frequent everywhere and would
    outweigh a question's one rare word, such as a name or a code. Codes (words joined
    by ``-``, ``.``, ``/`` or ``:`` with a digit among them) are also terms of their own.

    Args:
        k1: BM25 term-frequency saturation.
        b: BM25 length normalisation.
        stopwords: Words to ignore; ``None`` uses bm25s' ``STOPWORDS_EN_PLUS``.

    Raises:
        ImportError: If ``bm25s`` is not installed, saying how to install it.
    """

    def __init__(self, *, k1: float = K1, b: float = B, stopwords: Sequence[str] | None = None) -> None:
        try:
            from bm25s.stopwords import STOPWORDS_EN_PLUS
        except ImportError as exc:  # pragma: no cover - depends on the environment
            msg = (
                'focused reading ranks parts with BM25 from the bm25s package: pip install "rlm-graph[retrieval]", '
                "or pass retriever=VectorStoreRetriever(your_embeddings)"
            )
            raise ImportError(msg) from exc
        self.k1 = k1
        self.b = b
        self.stopwords = frozenset(word.lower() for word in (STOPWORDS_EN_PLUS if stopwords is None else stopwords))

    @property
    def identity(self) -> str:
        digest = hashlib.sha256("\x00".join(sorted(self.stopwords)).encode()).hexdigest()[:12]
        # "codes": the tokenizer that also keeps codes whole (an index built before it differs).
        return f"bm25s|k1={self.k1}|b={self.b}|stop={digest}|codes"

    def tokenize(self, text: str) -> list[str]:
        """Lower-cased words of ``text`` without stopwords, and its codes whole.

        A code (words joined by ``-``, ``.``, ``/`` or ``:`` with a digit among them, such
        as ``INV-2024-0042`` or ``v1.5``) is also a term of its own: its pieces ("inv",
        "2024") recur across a document, but the code itself names one place.
        """
        lowered = text.lower()
        words = [word for word in _WORD.findall(lowered) if word not in self.stopwords]
        return words + [code for code in _JOINED.findall(lowered) if _DIGIT.search(code)]

    def build(self, texts: Sequence[str]) -> PartIndex:
        """Index the parts' texts (:meth:`build_in_steps` run straight through)."""
        return run_steps(self.build_in_steps(texts))

    def build_in_steps(self, texts: Sequence[str]) -> Steps[PartIndex]:
        """:meth:`build` as steps: each part is tokenized and counted, with a pause after each.

        Not bm25s' index: bm25s builds its score matrix in one piece (0.6 s for 10M tokens
        here, on the caller's thread, since in a thread beside a busy event loop such a
        step waited 16 s to 20 s for the GIL), while the counts grow a part at a time and
        a question's scores take a few milliseconds.
        """
        import numpy as np

        vocabulary: dict[str, int] = {}
        words: list[Any] = []
        counts: list[Any] = []
        for text in texts:
            ids = [vocabulary.setdefault(word, len(vocabulary)) for word in self.tokenize(text)]
            distinct, frequencies = np.unique(np.array(ids, dtype=np.int32), return_counts=True)
            words.append(distinct)
            counts.append(frequencies.astype(np.int32))
            yield
        return _BM25Index(self, vocabulary, words, counts)


class _VectorIndex:
    def __init__(self, store: VectorStore, count: int) -> None:
        self._store = store
        self._count = count

    def rank(self, question: str) -> list[int]:
        if not self._count:
            return []
        found = self._store.similarity_search(question, k=self._count)
        return _complete([int(doc.metadata["part"]) for doc in found], self._count)


class VectorStoreRetriever:
    """Dense ranking with a LangChain ``Embeddings`` model in a LangChain ``VectorStore``.

    Each part is one entry of a fresh store, with its position as metadata. Mind
    the embedding model's own input limit: ``OpenAIEmbeddings`` splits longer
    inputs and averages them by itself; other models may truncate.

    Args:
        embeddings: The embedding model, for example ``OpenAIEmbeddings()``.
        store_factory: Makes an empty store for the embeddings;
            ``InMemoryVectorStore`` by default.
        name: Names the retriever in the index cache key; defaults to the
            embeddings' class and model name.

    Raises:
        TypeError: If ``embeddings`` is not a LangChain ``Embeddings``.
    """

    def __init__(
        self,
        embeddings: Embeddings,
        *,
        store_factory: Callable[[Embeddings], VectorStore] = InMemoryVectorStore,
        name: str | None = None,
    ) -> None:
        if not isinstance(embeddings, Embeddings):
            msg = f"embeddings must be a LangChain Embeddings, got {type(embeddings).__name__}"
            raise TypeError(msg)
        self.embeddings = embeddings
        self.store_factory = store_factory
        model = getattr(embeddings, "model", None) or getattr(embeddings, "model_name", None) or ""
        self.name = name or f"{type(embeddings).__qualname__}|{model}"

    @property
    def identity(self) -> str:
        return f"vectorstore|{self.name}|{getattr(self.store_factory, '__qualname__', self.store_factory)!s}"

    def build(self, texts: Sequence[str]) -> PartIndex:
        store = self.store_factory(self.embeddings)
        if texts:
            store.add_texts(list(texts), metadatas=[{"part": i} for i in range(len(texts))])
        return _VectorIndex(store, len(texts))


def default_retriever() -> Retriever:
    """The offline default: :class:`BM25Retriever` with its default settings."""
    return BM25Retriever()


def check_retriever(retriever: Any) -> Retriever:
    """Validate a ``retriever`` option.

    Args:
        retriever: What the caller passed.

    Returns:
        The retriever.

    Raises:
        TypeError: If it lacks ``identity`` or ``build``.
    """
    if not isinstance(retriever, Retriever):
        msg = (
            f"retriever must have an identity property and build(texts) -> index with rank(question) "
            f"(rlm_graph.BM25Retriever or rlm_graph.VectorStoreRetriever), got {type(retriever).__name__}"
        )
        raise TypeError(msg)
    return retriever


_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_MOST_TERM_SPANS = 5


def term_spans(question: str, text: str, offset: int = 0) -> list[tuple[int, int]]:
    """Paragraphs that hold every search term of the question: where the answer may well be.

    The terms are those the BM25 index scores by (:meth:`BM25Retriever.tokenize`: lower-cased
    words without stopwords, and codes whole). A question needs two terms or more, or one
    code, for a paragraph holding them all to mean something. Used when every reading said
    "nothing relevant", so the answer can say the search disagrees (:mod:`rlm_graph.coverage`).

    Args:
        question: The question.
        text: The text read.
        offset: Where ``text`` starts in the root document.

    Returns:
        Up to five ``(start, end)`` spans, root offsets; empty without ``bm25s`` or without terms.
    """
    try:
        tokenize = _term_tokenizer()
    except ImportError:
        return []
    terms = set(tokenize(question))
    if len(terms) < 2 and not any(_DIGIT.search(term) for term in terms):
        return []
    lowered = text.lower()
    # Cheap first: a term missing from the whole text rules every paragraph out.
    if any(term not in lowered for term in terms):
        return []
    rarest = min(terms, key=lowered.count)
    spans: list[tuple[int, int]] = []
    start = 0
    for end, after in [*((m.start(), m.end()) for m in _PARAGRAPH_BREAK.finditer(text)), (len(text), len(text))]:
        paragraph = lowered[start:end]
        if rarest in paragraph and terms <= set(tokenize(paragraph)):
            spans.append((offset + start, offset + end))
            if len(spans) == _MOST_TERM_SPANS:
                break
        start = after
    return spans


@functools.cache
def _term_tokenizer() -> Callable[[str], list[str]]:
    # One stopword set for the process, made on first use.
    return BM25Retriever().tokenize
