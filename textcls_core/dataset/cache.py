"""On-disk cache of data-stage outputs, keyed by content hashes and the settings that shape them.

An entry is a folder of the files a stage writes (Parquet, JSON, reports) plus `meta.json` (what the
stage returns) and `manifest.json` (every file with its size and sha256). It is written to a temporary folder and
renamed into place, so a crash leaves no half entry; an entry whose files do not match its manifest is
deleted and rebuilt. Callers copy the files into their run folder, so every run stays complete on its own.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = 1  # bump when the layout of an entry changes
_PACKAGES = ("pandas", "pyarrow", "numpy", "jieba", "opencc", "snownlp")


def fingerprint(*parts: Any) -> str:
    """sha256 of JSON-encoded parts (dict keys sorted), e.g. a stage name, a config slice and input hashes."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def code_version(*modules: str) -> str:
    """sha256 of the named modules' source files and the versions of the data libraries: a change to the
    code or a library that computes a stage invalidates its entries."""
    h = hashlib.sha256(f"{FORMAT} {platform.python_version()}".encode())
    for name in _PACKAGES:
        try:
            h.update(f"{name}={importlib.metadata.version(name)}".encode())
        except importlib.metadata.PackageNotFoundError:
            h.update(f"{name}=none".encode())
    for mod in modules:
        spec = importlib.util.find_spec(mod)
        assert spec is not None and spec.origin, f"no source for module {mod}"
        h.update(Path(spec.origin).read_bytes())
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def texts_sha256(texts: Iterable[str]) -> str:
    """sha256 over texts in order; each is length-prefixed, so ["ab", "c"] and ["a", "bc"] differ."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


@dataclass(frozen=True)
class Entry:
    """A stage's files (a cache entry, or a scratch folder when caching is off) and what it returned."""

    path: Path
    meta: dict[str, Any]
    hit: bool
    scratch: bool = False

    def file(self, name: str) -> Path:
        return self.path / name

    def copy_to(self, name: str, dest: str | Path) -> Path:
        """Put one file of the entry at dest: a copy, not a link, so the run folder never shares an inode
        with the cache; from a scratch folder (caching off) the file is moved instead."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        (shutil.move if self.scratch else shutil.copyfile)(self.path / name, dest)
        return dest

    def release(self) -> None:
        """Delete a scratch folder; a cache entry stays."""
        if self.scratch:
            shutil.rmtree(self.path, ignore_errors=True)


@dataclass(frozen=True)
class StageCache:
    """Entries under root/<stage>/<key>; root None = caching off (stages are computed every time)."""

    root: Path | None

    @classmethod
    def at(cls, cache_dir: str | Path | None) -> StageCache:
        return cls(Path(cache_dir).resolve() if cache_dir else None)

    def file_sha256(self, path: str | Path) -> str:
        """Content hash of a file; an index keyed by path, size and mtime skips re-reading an unchanged big file."""
        p = Path(path).resolve()
        st = p.stat()
        stamp = {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        index = self.root / "file_hashes" / f"{fingerprint(str(p))}.json" if self.root else None
        if index is not None and index.is_file():
            try:
                known = json.loads(index.read_text(encoding="utf-8"))
                if {k: known.get(k) for k in stamp} == stamp:
                    return str(known["sha256"])
            except (OSError, ValueError, KeyError):
                pass  # an unreadable index only costs a re-hash
        digest = file_sha256(p)
        if index is not None:
            _write_atomic(index, json.dumps(stamp | {"sha256": digest}))
        return digest

    def run(self, stage: str, key: str, build: Callable[[Path], dict[str, Any]], scratch: Path) -> Entry:
        """The entry for (stage, key): reused when complete, else built by `build(folder)` (which writes its
        files into folder and returns the meta dict) and stored. With caching off, built into a fresh
        folder under `scratch` that the caller copies from and may delete."""
        if self.root is None:
            scratch.mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix=f".{stage}-", dir=scratch))
            try:
                return Entry(folder, _jsonable(build(folder)), hit=False, scratch=True)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
        final = self.root / stage / key
        entry = _load(final)
        if entry is not None:
            return entry
        if final.exists():
            shutil.rmtree(final, ignore_errors=True)  # incomplete or damaged: rebuild it
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        _remove_stale(self.root / "tmp")
        folder = Path(tempfile.mkdtemp(prefix=f"{stage}-", dir=self.root / "tmp"))
        try:
            meta = _jsonable(build(folder))
            (folder / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
            files = {p.name: [p.stat().st_size, file_sha256(p)] for p in sorted(folder.iterdir()) if p.name != "manifest.json"}
            (folder / "manifest.json").write_text(json.dumps({"format": FORMAT, "files": files}), encoding="utf-8")
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(folder, final)
            except OSError:  # another run stored the same entry first: use theirs
                shutil.rmtree(folder, ignore_errors=True)
                return _load(final) or Entry(final, meta, hit=False)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return Entry(final, meta, hit=False)


def _jsonable(meta: dict[str, Any]) -> dict[str, Any]:
    """The meta as it reads back from JSON, so a stage returns the same values whether it was a hit or not."""
    return json.loads(json.dumps(meta, ensure_ascii=False))


def _load(folder: Path) -> Entry | None:
    """A complete entry, or None when it is missing, partial or damaged."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT:
            return None
        for name, (size, digest) in manifest["files"].items():
            if (folder / name).stat().st_size != size or file_sha256(folder / name) != digest:
                return None
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return None
    return Entry(folder, meta, hit=True) if isinstance(meta, dict) else None


def _remove_stale(tmp_root: Path, max_age_s: float = 86400) -> None:
    """Delete build folders left by runs killed mid-build (older than a day, so never one still being written)."""
    now = time.time()
    for p in tmp_root.iterdir():
        try:
            if now - p.stat().st_mtime > max_age_s:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def segment_with_cache(texts: list[str], workers: int, cache: StageCache, scratch: Path) -> tuple[list[list[str]], str]:
    """jieba words of `texts` (textcls_core.text.tokenize.segment_texts) through the cache: the entry is keyed by the texts'
    content hash and the segmentation code, so the encode stage, the tfidf_lr candidate (in its own process) and a
    re-run share one segmentation. Returns the words and the cache state: "hit", "miss" or "off"."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from textcls_core.text.tokenize import segment_texts

    if cache.root is None:
        return segment_texts(texts, workers), "off"
    computed: dict[str, list[list[str]]] = {}

    def build(folder: Path) -> dict[str, Any]:
        computed["tokens"] = segment_texts(texts, workers)
        pq.write_table(pa.table({"tokens": pa.array(computed["tokens"], type=pa.list_(pa.string()))}), folder / "tokens.parquet")
        return {"texts": len(texts)}

    entry = cache.run("segment", fingerprint("segment", texts_sha256(texts), code_version("textcls_core.text.tokenize")), build,
                      scratch=scratch)
    tokens = computed.get("tokens")
    if tokens is None:
        tokens = pq.read_table(entry.file("tokens.parquet")).column("tokens").to_pylist()
        if len(tokens) != len(texts):
            raise RuntimeError(f"cache entry {entry.path} holds {len(tokens)} token lists for {len(texts)} texts")
    return tokens, "hit" if entry.hit else "miss"
