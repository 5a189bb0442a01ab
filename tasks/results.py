"""What each stage of the train flow hands to the next: one TypedDict per stage result, and the run's context.

They are plain dicts at run time (Prefect passes, caches and logs them as such, and a resumed or retried task returns
the same shape), typed so that a reader and a type checker see which keys a stage promises, as kedro names the data
between its nodes. flows/train.py wires them: analysis -> cleaning -> split -> encoded -> trained -> candidates ->
evaluation -> package -> summary.
"""

from __future__ import annotations

from typing import Any, TypedDict


class RunContext(TypedDict):
    """The tracking state every task receives (tasks/tracking.py::start_tracking): which MLflow run it logs to and
    where the run's files go."""

    run_id: str
    tracking_uri: str
    experiment_id: str
    run_dir: str  # runs/<timestamp>-<run id>: data, encoded, model, reports, evaluation
    run_name: str
    prefect_flow_run_id: str
    cache_dir: str  # the data-stage cache, absolute; "" = off


class Analysis(TypedDict):
    raw_path: str  # <run>/data/raw.parquet: row_id, text, label (and meta_* columns), every row read
    stats: dict[str, Any]  # class balance, lengths, empties, duplicates, conflicts (reports/analysis.json)
    raw_sha256: str


class Cleaning(TypedDict):
    clean_path: str  # <run>/data/clean.parquet: the kept rows, model text beside raw_text
    dropped_path: str  # <run>/data/dropped.csv: every dropped row with its reason
    rows_in: int
    rows_kept: int
    rows_dropped: int
    dropped_by_reason: dict[str, int]


class Split(TypedDict):
    paths: dict[str, str]  # train/val/test -> <run>/data/<split>.parquet
    sha256: dict[str, str]  # content hash per split (MLflow dataset digests)
    rows: dict[str, int]
    dataset_sha256: str
    leakage_removed: int  # val/test rows dropped because their text is also in an earlier split


class Encoded(TypedDict, total=False):
    paths: dict[str, str]  # train/val/test -> <run>/encoded/<split>.ids.parquet: row_id, ids, label_id
    labels: list[str]  # label id -> class name (dataset.split.class_labels)
    encoder_dir: str  # <run>/encoded/encoder: THE TextEncoder, copied into the model folder
    fingerprint: dict[str, str]  # split contents + encoder sha256: a checkpoint of other data is refused
    vocab_path: str  # word models: <run>/encoded/vocab.json
    tokenizer_path: str  # transformer: the pretrained model's folder or hub name
    pad_id: int  # transformer: the tokenizer's pad id
    encoder: str  # "pretrained" for the transformer
    vocab_size: int
    num_classes: int
    train_oov_rate: float
    val_oov_rate: float
    test_oov_rate: float
    train_truncated_share: float
    val_truncated_share: float
    test_truncated_share: float


class SideWork(TypedDict):
    out_dir: str  # where the side process writes tfidf_lr and the out-of-fold probabilities
    pid: int
    label_error_folds: int


class Trained(TypedDict):
    model_dir: str  # <run>/model: the network with its encoder and labels (a TextClassifier folder)
    best_epoch: int
    best_val_accuracy: float
    best_score: float  # on select_metric
    select_metric: str
    epochs_run: int
    device: str
    world_size: int
    resumed_from_step: int
    parameters: int


class Candidates(TypedDict):
    chosen: str  # candidate key: model, tfidf_lr or ensemble
    chosen_name: str  # as shown: textcnn, tfidf_lr, ensemble(textcnn+tfidf_lr)
    model_dir: str  # the chosen candidate's folder: what is evaluated, gated and shipped
    reason: str
    baseline_dir: str | None  # the tfidf_lr folder: the report's and the gate's baseline
    table: list[dict[str, Any]]  # every candidate on validation and test
    notes: list[str]
    path: str  # reports/candidates.json
    oof_path: str | None  # out-of-fold probabilities for the label-error search
    val_reference: str  # the chosen candidate's out-of-sample validation probabilities (and OOV shares), .npz


class Evaluation(TypedDict, total=False):
    metrics: dict[str, float]  # test_*, baseline_*, champion_* and val_* metrics
    per_class: dict[str, dict[str, float]]
    dir: str  # <run>/evaluation
    badcases_path: str
    report_path: str
    relabel_queue_path: str | None
    n_test: int
    champion_version: str | None
    predictions_path: str  # <run>/gate/predictions.npz: per test row, the model's and the champion's predicted label


class Stress(TypedDict):
    metrics: dict[str, float]
    table: list[dict[str, Any]]  # one row per perturbation: flip rate, accuracy drop
    clean: dict[str, Any]
    n: int
    html_path: str
    examples_path: str
    seconds: float


class Package(TypedDict, total=False):
    model_name: str
    version: str
    alias: str  # champion when the gate passed, else candidate
    reason: str
    gate_failures: list[str]
    gate_checks: list[dict[str, Any]]
    model_uri: str  # models:/<name>@<alias>
    model_version_uri: str  # models:/<name>/<version>
    previous_champion: str | None
