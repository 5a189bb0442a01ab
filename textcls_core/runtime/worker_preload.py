"""Imported once by a run's fork server (procs.start_fork_server): the modules its workers run, and jieba's
dictionary loaded, so every worker forked from it starts ready instead of importing and loading for 1-3 s.

The workers: jieba segmentation pools (text.tokenize), the tfidf_lr side process (training.side_work) and the
stress workers (evaluation.stress)."""

from __future__ import annotations

import textcls_core.evaluation.stress  # noqa: F401
import textcls_core.training.side_work  # noqa: F401
from textcls_core.text.tokenize import _jieba

_jieba().initialize()
