"""Pre-flight checks: cheap reads that make a wrong path, column, gate file or pretrained folder fail before any
work starts, with the one-line message naming the key. The CLI runs them before a server starts; the flows run them
as their first task, so a deployment run fails the same way as `textcls run`."""

from __future__ import annotations

from textcls_core.dataset.read import check_dataset_source
from textcls_core.registry.gate import check_gate_files
from textcls_core.runtime.config import Config
from textcls_core.text.encoders import check_pretrained_source


def preflight(cfg: Config) -> None:
    """Raise the user's mistake (DataError / ConfigError) found in the data source, the gate files or the
    pretrained source; return None when all are usable (first rows only: big files are not read)."""
    d = cfg.data
    check_dataset_source(d.path, d.text_column, d.label_column, d.encoding, cfg.extra_columns())
    check_gate_files(cfg.registry.eval_set, cfg.registry.regression_set, d.text_column, d.label_column, d.encoding)
    if cfg.model.pretrained and (cfg.model.name == "transformer" or "model.name" in cfg.tune.space):
        check_pretrained_source(cfg.model.pretrained)
