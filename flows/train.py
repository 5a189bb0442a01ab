"""The `train-text-classifier` flow: analyze -> clean -> split -> encode -> train -> candidates -> evaluate -> package."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.artifacts import link_mlflow_run_task, train_artifacts_task
from tasks.candidates import candidates_bound, candidates_task, start_side_work_task, stop_side_work
from tasks.data import analyze_task, clean_task, split_task
from tasks.encode import encode_task
from tasks.encode_pretrained import encode_pretrained_task
from tasks.evaluate import evaluate_task
from tasks.monitor import profile_task
from tasks.package import package_task
from tasks.preflight import preflight_task
from tasks.runguard import guard_run
from tasks.stress import start_stress_task, stop_background_stress, stress_task
from tasks.summary import summary_task
from tasks.tracking import finish_tracking, run_config, start_tracking, train_flow_run_name
from tasks.train import train_task
from textcls_core.runtime.config import Config
from textcls_core.runtime.procs import available_cpus, limit_thread_pools, resolve_cpus, start_fork_server
from textcls_core.text.tokenize import WARM_PRELOAD
from textcls_core.training.candidates import plan_candidates


@flow(name="train-text-classifier", validate_parameters=True, flow_run_name=train_flow_run_name)
def train_text_classifier(config: Config = Config(), summary_path: str | None = None,
                          resume_run_id: str | None = None) -> dict[str, Any]:
    """Train, evaluate and register a Chinese text classifier; returns the run summary.

    resume_run_id: an interrupted run's MLflow run id; its folder is reused and training resumes from its checkpoint.
    """
    if not resume_run_id:  # a resumed run re-reads its own checked config
        preflight_task(config)  # a wrong path, column or gate file fails here, before an MLflow run or any work
    tracking = start_tracking(config, resume_run_id)
    guard = guard_run(tracking, config.run, config.train.epochs)  # stage time bounds; clean stop on SIGTERM/Ctrl-C
    try:
        link_mlflow_run_task(tracking, "train")  # first, so a running or failed flow run links to its MLflow run
        if resume_run_id:
            config = run_config(tracking["run_dir"])  # the interrupted run's own settings, whatever was passed
        config = resolve_cpus(config)  # run.cpus -> jieba workers and torch threads
        cpus = available_cpus(config.run.cpus)
        limit_thread_pools(cpus)  # numpy / scipy / scikit-learn threads: the run's cores, not the machine's
        if cpus > 1:  # the run's workers (jieba pools, side process, stress) fork ready from it; it imports beside analysis
            start_fork_server([WARM_PRELOAD])
        # one process: the fork server is still importing while the file is read (its first pool would wait for it)
        analysis = analyze_task(config.data, config.extra_columns(), config.run.seed, tracking, max_len=config.tokenize.max_len)
        cleaning = clean_task(analysis["raw_path"], config.clean, tracking, max_len=config.tokenize.max_len,
                              workers=config.tokenize.workers)  # its token sample in run.cpus jieba processes
        split = split_task(cleaning["clean_path"], config.split, config.run.seed, tracking)
        trained, side = None, None  # no network when model.candidates holds only tfidf_lr (or model.name is tfidf_lr)
        plan = plan_candidates(config.model, config.evaluate.baseline)
        if plan.train_network:
            if config.model.name == "transformer":
                encoded = encode_pretrained_task(split["paths"], config.tokenize, config.model, tracking, config.clean)
            else:
                encoded = encode_task(split["paths"], config.tokenize, tracking, config.clean)
            if plan.train_tfidf and cpus > 1:  # tfidf_lr and the label-error search need no network: beside training
                side = start_side_work_task(split["paths"], encoded["labels"], config.model, config.tokenize, config.clean,
                                            config.train.select_metric, config.evaluate.label_error_folds,
                                            config.run.seed, tracking)
            train = train_task.with_options(retries=config.train.retries, retry_delay_seconds=5)
            trained = train(encoded, config.model, config.train, config.tokenize, config.clean, config.run.seed, tracking)
        candidates = candidates_task(split["paths"], trained["model_dir"] if trained else None, config.model, config.tokenize,
                                     config.clean, config.train.select_metric, config.evaluate.baseline, config.run.seed, tracking,
                                     side=side, label_error_folds=config.evaluate.label_error_folds,
                                     timeout_s=candidates_bound(config.run, split))
        model_dir = candidates["model_dir"]  # the best candidate on validation is what is evaluated, gated and shipped
        stressing = start_stress_task(model_dir, split["paths"]["test"], config.stress, config.evaluate.batch_size,
                                      config.run.seed, tracking, workers=cpus)  # its worker processes run beside evaluation
        evaluation = evaluate_task(model_dir, split["paths"], config.evaluate, config.registry.model_name,
                                   config.run.seed, tracking, source_path=config.data.path, candidates=candidates)
        profile_task(model_dir, split["paths"], config.monitor, config.run.seed, tracking,  # ships in the model folder
                     reference=candidates.get("val_reference"))
        stress = stress_task(model_dir, split["paths"]["test"], config.stress, config.evaluate.batch_size,
                             config.run.seed, tracking, workers=cpus, started=stressing)  # before package: registry.max_flip_rate gates on its stress.json
        tags = {"dataset_sha256": split["dataset_sha256"], "mlflow_run_id": tracking["run_id"],
                "prefect_flow_run_id": tracking.get("prefect_flow_run_id", "")}
        package = package_task(model_dir, evaluation["metrics"], evaluation["per_class"], config, tracking, tags,
                               split["paths"], predictions=evaluation.get("predictions_path"))
        summary = summary_task(tracking, analysis, cleaning, split, trained, evaluation, package, summary_path, stress=stress,
                               candidates=candidates)
        train_artifacts_task(tracking, cleaning, evaluation, package)  # tables, links and events on the flow run
    except BaseException:
        stop_side_work()
        stop_background_stress()
        finish_tracking(tracking, "FAILED")
        raise
    finally:
        guard.close()
    finish_tracking(tracking, "FINISHED")
    return summary
