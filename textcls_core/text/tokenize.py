"""jieba segmentation, a vocabulary built from train only, and token ids."""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from types import ModuleType

from textcls_core.runtime.procs import available_cpus, fork_server_preloaded, safe_mp_context

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
# Below this many texts one process is used: starting the pool and loading jieba's dictionary in each
# worker took 1.5-3 s on a 2-core machine (benchmarks/segment_parallel.py), which only pays off on big inputs.
PARALLEL_MIN_TEXTS = 50000
# With the run's fork server already up and jieba loaded in it (runtime/worker_preload.py), a pool starts in
# milliseconds, and from this many texts the workers' share of the work outweighs sending texts and words across.
WARM_PARALLEL_MIN_TEXTS = 2000
WARM_PRELOAD = "textcls_core.runtime.worker_preload"


def resolve_workers(workers: int) -> int:
    """tokenize.workers as a process count: 0 means one per CPU core this process may use (affinity, cgroup quota)."""
    return available_cpus(workers)


def _pool_context() -> multiprocessing.context.BaseContext:
    """Workers that start clean and cheap. Not fork: the Prefect flow process runs threads, and forking a
    threaded process can deadlock the child. Not plain spawn: every worker would re-import the caller's
    __main__ (the CLI imports Prefect and MLflow, seconds per worker). A fork server that imported only
    this module (and jieba) gives neither problem; spawn remains where there is no fork server (Windows)."""
    return safe_mp_context([__name__, "jieba"])


def _jieba() -> ModuleType:
    """jieba, imported on first use: the training engine imports this module only for PAD_ID/UNK_ID, also on
    machines without jieba (the GPU check's device has none)."""
    import jieba

    jieba.setLogLevel(logging.WARNING)  # jieba prints its dictionary loading to stderr otherwise
    return jieba


def _init_worker() -> None:
    _jieba().initialize()  # load the dictionary once per worker, not inside the first chunk


class _BlockMemo:
    """jieba's words per block, remembered: a text is segmented block by block, so a block seen before costs a lookup.

    jieba.cut splits a text at every character outside its han pattern (CJK, letters, digits and `+#&._%-`) and
    segments each block on its own, so the words of a text are exactly the words of its blocks in order. This does the
    same split and keeps each block's words. Repeats are common: the stress stage's perturbations keep most clauses of
    a text (its very_long text is one text repeated), the analysis segments the same texts before and after cleaning,
    and real traffic repeats its phrases. Bounded: blocks of at most MAX_BLOCK characters are kept, and the memo is
    emptied when the kept blocks reach MAX_CHARS characters (about 32 MiB at the built-in corpus's density,
    benchmarks/segment_memo.py), so no input grows it without limit; the environment variable TEXTCLS_SEGMENT_MEMO_CHARS sets MAX_CHARS for a process
    (0 turns the memo off, e.g. to time jieba's own work). Same words as jieba.lcut for every text
    (tests/core/text/test_tokenize_batching.py)."""

    MAX_BLOCK = 64
    MAX_CHARS = 500_000

    def __init__(self) -> None:
        self.words: dict[str, tuple[str, ...]] = {}
        self.chars = 0
        self._split = None
        setting = os.environ.get("TEXTCLS_SEGMENT_MEMO_CHARS", "").strip()
        if setting.isdigit():
            self.MAX_CHARS = int(setting)

    def _bind(self) -> None:
        jieba = _jieba()
        han = jieba.re_han_default
        # the per-block segmenter jieba.cut itself calls on a han block (jieba is pinned <0.43, where the name is
        # stable); jieba.lcut gives the same words with one more regex split per block
        cut_block = getattr(jieba.dt, "_Tokenizer__cut_DAG", None)
        lcut = jieba.lcut

        def block_words(blk: str) -> tuple[str, ...]:
            if cut_block is not None and han.match(blk):  # jieba.cut's own test for a han block
                return tuple(cut_block(blk))
            return tuple(lcut(blk))

        self._split, self._block_words = han.split, block_words

    def segment(self, text: str) -> list[str]:
        """jieba.lcut(text) with whitespace-only tokens removed."""
        if self._split is None:
            self._bind()
        out: list[str] = []
        memo = self.words
        for blk in self._split(text):
            if not blk:
                continue
            words = memo.get(blk)
            if words is None:
                words = tuple(w for w in self._block_words(blk) if w.strip())
                if len(blk) <= self.MAX_BLOCK and self.MAX_CHARS:
                    if self.chars + len(blk) > self.MAX_CHARS:
                        memo.clear()
                        self.chars = 0
                    memo[blk] = words
                    self.chars += len(blk)
            out.extend(words)
        return out


_MEMO = _BlockMemo()


@contextmanager
def cold_segmentation() -> Iterator[None]:
    """Inside this block the process's block memo is empty and keeps nothing: timings (the evaluation's latency
    figures) measure jieba's own work, not a lookup of texts segmented a moment before. Restored afterwards."""
    saved = _MEMO.MAX_CHARS
    _MEMO.words.clear()
    _MEMO.chars = 0
    _MEMO.MAX_CHARS = 0
    try:
        yield
    finally:
        _MEMO.MAX_CHARS = saved


def _segment_chunk(texts: list[str]) -> list[list[str]]:
    segment = _MEMO.segment
    return [segment(t) for t in texts]


_SHARED: ContextVar[dict[str, list[str]] | None] = ContextVar("textcls_shared_segmentation", default=None)


@contextmanager
def shared_segmentation() -> Iterator[None]:
    """Inside this block a text is segmented once: an ensemble's members, which read the same cleaned text, share
    jieba's work instead of doing it once each. The memo lives only as long as the block (one prediction call)."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def segment_texts(texts: Iterable[str], workers: int = 1, min_parallel: int = PARALLEL_MIN_TEXTS) -> list[list[str]]:
    """jieba words per text, whitespace-only tokens removed; same result and order for any `workers`.

    With workers > 1 (0 = one per core) and at least `min_parallel` texts, contiguous chunks are
    segmented in a process pool (our own rather than jieba.enable_parallel, which is POSIX-only and
    switches jieba globally; see _pool_context for how workers start). Inside `shared_segmentation()`
    texts already segmented in the block are not segmented again.
    """
    texts = list(texts)
    memo = _SHARED.get()
    if memo is not None:
        missing = list(dict.fromkeys(t for t in texts if t not in memo))
        if missing:
            memo.update(zip(missing, _segment(missing, workers, min_parallel)))
        return [list(memo[t]) for t in texts]
    return _segment(texts, workers, min_parallel)


def _segment(texts: list[str], workers: int, min_parallel: int) -> list[list[str]]:
    n_workers = min(resolve_workers(workers), max(len(texts), 1))
    if min_parallel == PARALLEL_MIN_TEXTS and fork_server_preloaded(WARM_PRELOAD):
        min_parallel = WARM_PARALLEL_MIN_TEXTS
    if n_workers <= 1 or len(texts) < min_parallel:
        return _segment_chunk(texts)
    # a few chunks per worker evens out texts of uneven length without paying per-text IPC
    size = -(-len(texts) // (n_workers * 4))
    chunks = [texts[i : i + size] for i in range(0, len(texts), size)]
    with ProcessPoolExecutor(n_workers, mp_context=_pool_context(), initializer=_init_worker) as pool:
        return [toks for part in pool.map(_segment_chunk, chunks) for toks in part]


def build_vocab(token_lists: Iterable[Sequence[str]], min_freq: int = 2, max_size: int = 50000) -> list[str]:
    """Index-to-token list: <pad>=0, <unk>=1, then words by descending frequency (ties alphabetical)."""
    counts = Counter(w for toks in token_lists for w in toks)
    words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
    return [PAD, UNK] + words[: max(0, max_size - 2)]


def encode_tokens(token_lists: Iterable[Sequence[str]], stoi: dict[str, int], max_len: int) -> list[list[int]]:
    """Token ids per text, cut to max_len. No padding here: batches are padded by the collate function."""
    return [[stoi.get(w, UNK_ID) for w in toks[:max_len]] for toks in token_lists]


def oov_rate(token_lists: Iterable[Sequence[str]], stoi: dict[str, int]) -> float:
    """Share of tokens that map to <unk>."""
    total = unk = 0
    for toks in token_lists:
        total += len(toks)
        unk += sum(1 for w in toks if w not in stoi)
    return unk / total if total else 0.0
