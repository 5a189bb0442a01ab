"""Training stage: runs the core loop in-process, or under torchrun for several devices/nodes, and saves the model."""

from __future__ import annotations

import json
import subprocess
from collections import deque
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.artifacts import EpochProgress
from tasks.candidates import CoreShare
from tasks.gpu_limit import gpu_slots, occupy_gpus
from tasks.results import Encoded, RunContext, Trained
from tasks.runguard import mark_stage, parquet_rows
from tasks.tracking import MetricLogger, client_for, get_run_logger, log_artifacts, log_metrics_now, system_metrics
from textcls_core.modeling.predictor import TextClassifier
from textcls_core.runtime.config import CleanConfig, ModelConfig, TokenizeConfig, TrainConfig
from textcls_core.runtime.errors import TextclsError
from textcls_core.text.encoders import PretrainedEncoder, TextEncoder, WordEncoder, load_tokenizer
from textcls_core.text.tokenize import PAD_ID
from textcls_core.training.distributed import ERROR_PREFIX, METRIC_PREFIX, launch_command, result_paths
from textcls_core.training.fit import FitSpec, fit, prepare_model
from textcls_core.training.loop import pick_device


def retry_unless_user_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry crashes (the retry resumes from the checkpoint); a user's mistake fails at once."""
    return not isinstance(getattr(state, "data", None), TextclsError)


def _run_torchrun(spec: FitSpec, spec_path: Path, train_cfg: TrainConfig, metric_logger: MetricLogger, log: Any) -> dict[str, Any]:
    """Start torchrun, forward its output to the Prefect log and rank 0's metric lines to MLflow."""
    cmd = launch_command(train_cfg, spec_path)
    log.info("train: torchrun with %d process(es) per node on %d node(s): %s", train_cfg.devices, train_cfg.nnodes, " ".join(cmd))
    if train_cfg.nnodes > 1:
        log.info("train: on every other node run the same command with --node_rank=<its rank>; %s must be on shared storage",
                 spec_path.parent)
    tail: deque[str] = deque(maxlen=40)
    user_error = ""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            if line.startswith(METRIC_PREFIX):
                rec = json.loads(line[len(METRIC_PREFIX):])
                metric_logger(rec["metrics"], rec["step"])
            elif line.startswith(ERROR_PREFIX):
                user_error = json.loads(line[len(ERROR_PREFIX):])
            elif line:
                tail.append(line)
                log.info("torchrun | %s", line)
    if user_error:
        raise TextclsError(user_error)
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun exited with code {proc.returncode}; last lines:\n" + "\n".join(tail))
    best_path, result_path = result_paths(spec_path)
    return json.loads(result_path.read_text(encoding="utf-8")) | {"best_path": str(best_path)}


def _run_encoder(encoded: Encoded, tok_cfg: TokenizeConfig, clean_cfg: CleanConfig) -> TextEncoder:
    """The encoder the encode stage saved (the model folder gets the same files); hand-built encoded dicts
    without one (tests, old callers) get the equivalent from the vocabulary or tokenizer."""
    if encoded.get("encoder_dir"):
        return TextEncoder.load(encoded["encoder_dir"])
    if encoded.get("tokenizer_path"):
        tokens: WordEncoder | PretrainedEncoder = PretrainedEncoder(load_tokenizer(encoded["tokenizer_path"]), tok_cfg.max_len)
    else:
        tokens = WordEncoder(json.loads(Path(encoded["vocab_path"]).read_text(encoding="utf-8")), tok_cfg.max_len)
    return TextEncoder(clean_cfg, tokens)


@task(name="train", cache_policy=NO_CACHE, retry_condition_fn=retry_unless_user_error)
def train_task(encoded: Encoded, model_cfg: ModelConfig, train_cfg: TrainConfig, tok_cfg: TokenizeConfig,
               clean_cfg: CleanConfig, seed: int, tracking: RunContext,
               epoch_hook: Callable[[int, dict[str, float]], None] | None = None) -> Trained:
    """Train (resuming from <run>/checkpoints/last.pt when present), keep the best epoch, save <run>/model.

    On GPU it holds train.devices slots of the Prefect global concurrency limit `textcls-gpu` (tasks/gpu_limit.py).
    epoch_hook(epoch, metrics) is called after each epoch's validation (in-process training only): `textcls tune`
    reports to Optuna there and stops a pruned trial by raising.
    """
    mark_stage("train", parquet_rows(encoded["paths"]["train"], encoded["paths"]["val"]))  # watchdog: this stage's time bound starts now
    log = get_run_logger()
    run_dir = Path(tracking["run_dir"])
    labels: list[str] = encoded["labels"]
    share = CoreShare(train_cfg.num_threads or torch.get_num_threads())  # a core for the side process while it runs
    spec = FitSpec(train_path=encoded["paths"]["train"], val_path=encoded["paths"]["val"], labels=labels,
                   model=model_cfg, train=train_cfg.model_copy(update={"num_threads": share.wanted()}), max_len=tok_cfg.max_len, seed=seed,
                   vocab_size=encoded["vocab_size"], pad_id=encoded.get("pad_id", PAD_ID),
                   checkpoint_path=str(run_dir / "checkpoints" / "last.pt"), fingerprint=encoded.get("fingerprint", {}))
    client = client_for(tracking["tracking_uri"])
    metric_logger = MetricLogger(tracking)
    progress = EpochProgress(train_cfg.epochs, train_cfg.select_metric)  # a Prefect progress artifact, updated per epoch
    log_metrics = progress.wrap(metric_logger)
    processes = train_cfg.devices * train_cfg.nnodes
    gpus = ExitStack()  # the GPU slots of the `textcls-gpu` limit, held while training runs (none on CPU)
    gpus.enter_context(occupy_gpus(gpu_slots(train_cfg.devices, pick_device(train_cfg.device).type)))
    gpus.enter_context(system_metrics(tracking))  # system/* metrics (CPU, memory, GPU when present) while training
    try:  # metrics reach MLflow even when training fails (the resumed run goes on from the checkpoint)
        if processes > 1:
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            spec_path = spec.to_json(run_dir / "checkpoints" / "fit_spec.json")
            facts = _run_torchrun(spec, spec_path, train_cfg, log_metrics, log)
            model, _ = prepare_model(spec)
            model.load_state_dict(torch.load(facts["best_path"], map_location="cpu", weights_only=True))
            device = facts["device"]
            history = facts["history"]
        else:
            dev = pick_device(train_cfg.device)
            device = str(dev)
            log.info("train: %s on %s, checkpoints in %s", model_cfg.name, dev, spec.checkpoint_path)
            def with_hook(metrics: dict[str, float], step: int) -> None:
                share.adjust()  # one core to the side process while it runs, all of them again once it is done
                log_metrics(metrics, step)
                if epoch_hook is not None and train_cfg.select_metric in metrics:  # the per-epoch row names its epoch
                    epoch_hook(int(metrics["epoch"]), metrics)
            model, result = fit(spec, dev, log_metrics=with_hook, message=log.info)
            facts = {"best_epoch": result.best_epoch, "best_score": result.best_score, "best_val_accuracy": result.best_val_accuracy,
                     "stopped_early": result.stopped_early, "resumed_from_step": result.resumed_from_step,
                     "micro_batch_size": result.micro_batch_size, "steps": result.steps, "world_size": 1}
            history = result.history
    finally:
        metric_logger.flush()
        gpus.close()
        share.restore()
    progress.finish(len(history), facts["stopped_early"])
    n_params = sum(p.numel() for p in model.parameters())
    client.set_tag(tracking["run_id"], "textcls.device", device)
    client.set_tag(tracking["run_id"], "textcls.world_size", str(facts["world_size"]))
    log_metrics_now(tracking, {"best_epoch": facts["best_epoch"], "best_val_accuracy": facts["best_val_accuracy"],
                               f"best_{train_cfg.select_metric}": facts["best_score"], "model_parameters": n_params,
                               "train_resumed_from_step": facts["resumed_from_step"],
                               "train_final_micro_batch_size": facts["micro_batch_size"]})
    model_dir = run_dir / "model"
    TextClassifier(model.cpu(), _run_encoder(encoded, tok_cfg, clean_cfg), labels, model_cfg).save(model_dir)
    history_path = run_dir / "reports" / "train_history.json"
    history_path.parent.mkdir(parents=True, exist_ok=True)
    history_path.write_text(json.dumps(history, indent=2), encoding="utf-8")
    log_artifacts(tracking, [history_path], "reports")
    log.info("train: best epoch %d, %s %.4f%s%s", facts["best_epoch"], train_cfg.select_metric, facts["best_score"],
             " (stopped early)" if facts["stopped_early"] else "",
             f" (resumed from step {facts['resumed_from_step']})" if facts["resumed_from_step"] else "")
    return {"model_dir": str(model_dir), "best_epoch": facts["best_epoch"], "best_val_accuracy": facts["best_val_accuracy"],
            "best_score": facts["best_score"], "select_metric": train_cfg.select_metric,
            "epochs_run": len(history), "device": device, "world_size": facts["world_size"],
            "resumed_from_step": facts["resumed_from_step"], "parameters": n_params}
