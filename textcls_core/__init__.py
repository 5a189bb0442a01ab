"""textcls core: pure, typed functions for every pipeline stage (no prefect, no mlflow), grouped by role:

    runtime/     the config schema and its reference, environment settings, user errors, cores and child processes,
                 the per-stage watchdog, pre-flight checks, credential redaction
    dataset/     reading a labelled file, analysis, cleaning, the split, training-text fingerprints, the data-stage
                 cache, relabelled copies
    text/        jieba segmentation and the vocabulary, the one encoder object (raw text -> ids), batches and padding
    modeling/    the networks, tfidf_lr, the ensemble, the delivered classifier and the loader for every kind
    training/    the loop, one fit from encoded files, torchrun, candidates and the choice, side work, the search space
    evaluation/  metrics, the assembled evaluation and its HTML, stress tests, label errors, drift, the bootstrap
    registry/    the promotion gate, model cards, names a tracking server accepts

Modules moved here from the flat layout keep working under their old names (`textcls_core.predictor`,
`textcls_core.classifiers`, ...): a model packaged before the move imports those, and tests/test_old_model_loads.py
loads one. The old name is an alias of the same module object, not a copy.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

__version__ = "0.1.0"

# old flat name -> where the module lives now
MOVED: dict[str, str] = {
    "config": "runtime.config",
    "config_reference": "runtime.config_reference",
    "settings": "runtime.settings",
    "errors": "runtime.errors",
    "procs": "runtime.procs",
    "watchdog": "runtime.watchdog",
    "preflight": "runtime.preflight",
    "redact": "runtime.redact",
    "data": "dataset.read",
    "analyze": "dataset.analyze",
    "clean": "dataset.clean",
    "split": "dataset.split",
    "fingerprint": "dataset.fingerprint",
    "cache": "dataset.cache",
    "relabel": "dataset.relabel",
    "tokenize": "text.tokenize",
    "encoders": "text.encoders",
    "batching": "text.batching",
    "models": "modeling.networks",
    "tfidf_model": "modeling.tfidf",
    "ensemble": "modeling.ensemble",
    "classifiers": "modeling.classifiers",
    "predictor": "modeling.predictor",
    "proba": "modeling.proba",
    "train": "training.loop",
    "fit": "training.fit",
    "distributed": "training.distributed",
    "candidates": "training.candidates",
    "side_work": "training.side_work",
    "tune": "training.search_space",
    "evaluate": "evaluation.metrics",
    "evaluation_report": "evaluation.assemble",
    "report": "evaluation.html",
    "assessment": "evaluation.assessment",
    "bootstrap": "evaluation.bootstrap",
    "stress": "evaluation.stress",
    "label_issues": "evaluation.label_issues",
    "baseline": "evaluation.out_of_fold",
    "drift": "evaluation.drift",
    "gate": "registry.gate",
    "model_card": "registry.model_card",
    "tracking_names": "registry.tracking_names",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves `textcls_core.<old name>` to the module's new home; the import system then keeps it under both names."""

    def __init__(self) -> None:
        self._real_specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        package, _, leaf = fullname.partition(".")
        if package == __name__ and leaf in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(f"{__name__}.{MOVED[spec.name.partition('.')[2]]}")
        self._real_specs[spec.name] = module.__spec__  # the import system overwrites __spec__ with the alias's
        return module

    def exec_module(self, module: ModuleType) -> None:
        alias = module.__spec__.name if module.__spec__ else ""
        module.__spec__ = self._real_specs.pop(alias, module.__spec__)  # already executed under its new name


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())
