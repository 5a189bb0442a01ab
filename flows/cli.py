"""`textcls` command line. User mistakes print one clear message and exit 2; --debug shows tracebacks."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from textcls_core.dataset.read import check_dataset_source
from textcls_core.runtime.config import load_config
from textcls_core.runtime.errors import ConfigError, TextclsError
from textcls_core.runtime.preflight import preflight
from textcls_core.runtime.redact import redact_text, redact_uri, redact_values

EXIT_USER_ERROR = 2


class _HideUserErrorTracebacks(logging.Filter):
    """Prefect logs task failures with a traceback; for a TextclsError the CLI prints one clean message instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, TextclsError)


def _quiet_prefect_user_errors() -> None:
    filt = _HideUserErrorTracebacks()
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", "prefect.flow_engine", "prefect.task_engine"):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(filt)
        logging.getLogger(name).addFilter(filt)


def print_summary(s: dict[str, Any]) -> None:
    m = s["metrics"]
    print("\n== textcls run finished ==")
    epoch = f", best epoch {s['best_epoch']}" if s.get("best_epoch") is not None else ""
    print(f"test accuracy   {m['test_accuracy']:.4f}   macro-F1 {m['test_macro_f1']:.4f}   ({s['rows']['test']} test texts{epoch}, {s['device']})")
    sampled = f", {s['rows']['used']} sampled" if s["rows"]["used"] != s["rows"]["read"] else ""
    print(f"rows            {s['rows']['read']} read{sampled}, {s['rows']['kept']} kept, {s['rows']['dropped']} dropped {s['dropped_by_reason']}")
    print(f"registered      {s['model_name']} version {s['model_version']} -> @{s['model_alias']} ({s['alias_reason']})")
    print(f"load it         mlflow.pyfunc.load_model('{s['model_uri']}')")
    print(f"MLflow          {redact_uri(s['mlflow_tracking_uri'])}  run {s['mlflow_run_id']}")
    print(f"open the UI     {s['mlflow_ui_command']}")
    if s.get("candidates"):
        c = s["candidates"]
        print(f"shipped         {c['shipped']}: {c['reason']}")
        for r in c["table"]:
            print(f"  {'*' if r['chosen'] else ' '} {r['name']:<26} val acc {r['val_accuracy']:.4f} F1 {r['val_macro_f1']:.4f}"
                  f"   test acc {r['test_accuracy']:.4f} F1 {r['test_macro_f1']:.4f}" + ("" if r["compared"] else "   (reference only)"))
    elif "baseline_test_accuracy" in m:
        print(f"baseline        TF-IDF + LR test accuracy {m['baseline_test_accuracy']:.4f}   macro-F1 {m['baseline_test_macro_f1']:.4f}")
    if "gate.ci_low" in s:
        print(f"gate            {s['gate.metric']} on {s['gate.n_shared_rows']} shared rows: delta {s['gate.delta']:+.4f}, "
              f"interval [{s['gate.ci_low']:+.4f}, {s['gate.ci_high']:+.4f}] -> {s['gate.decision']}")
    elif s.get("gate.outcome") == "insufficient_evidence":
        print(f"gate            insufficient evidence: {s['gate.n_shared_rows']} shared rows < registry.min_shared_rows -> challenger")
    if s.get("champion_compared"):
        print(f"vs champion     v{s['champion_compared']}: macro-F1 delta {m['vs_champion_delta_macro_f1']:+.4f}, "
              f"{m['vs_champion_newly_wrong']:.0f} newly wrong, {m['vs_champion_newly_right']:.0f} newly right")
    if s.get("relabel"):
        r = s["relabel"]
        print(f"relabelled data {r['labels_changed']} labels changed, {r['rows_dropped']} rows dropped since parent {r['parent_path']}")
    if s.get("stress"):
        worst = sorted(s["stress"]["perturbations"], key=lambda r: -r["flip_rate"])[:3]
        print(f"stress          {s['stress']['n']} texts; highest flip rates "
              + ", ".join(f"{r['perturbation']} {r['flip_rate']:.3f}" for r in worst) + f"  ({s['reports']['stress_html']})")
    print(f"run files       {s['run_dir']}")
    print(f"report          {s['reports']['html']}")


def _prepare_env(args: argparse.Namespace) -> None:
    _default_env()
    import prefect  # noqa: F401  (configures Prefect's logging, which the filter below attaches to)

    if not args.debug:
        _quiet_prefect_user_errors()


def _default_env() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class _EarlyServer:
    """Prefect's temporary server, started before this process imports Prefect and the flow's modules.

    With no PREFECT_API_URL, Prefect starts a temporary server (a uvicorn subprocess that takes seconds to start) on
    the flow's first API call, after this process has spent seconds more importing Prefect, torch, MLflow and
    scikit-learn. Started here first, the two overlap (start-up and exit: 12.6 -> 10.0 s, benchmarks/RESULTS.md,
    session 9). It is the same command and environment Prefect's SubprocessASGIServer uses;
    the flow reaches it through PREFECT_API_URL (`settings()`), and it is stopped when the command ends, like
    Prefect's own.

    It starts when the environment has no PREFECT_API_URL; Prefect's other sources of that setting (a profile,
    prefect.toml) are read once Prefect is imported, and `confirm()` then stops it if one of them names a server.
    A thread waits for it to answer, then sends it a flow and a flow-run query while this process is still importing,
    so that a new server's first database queries are not the flow's."""

    def __init__(self) -> None:
        import importlib.util
        import threading

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/api"
        _default_env()
        app_dir = Path(importlib.util.find_spec("prefect").origin).parent.parent  # site-packages, Prefect not imported
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), "--factory",
             "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "error", "--lifespan", "on"], env=env)
        atexit.register(self.stop)
        self.ready = threading.Event()
        threading.Thread(target=self._warm_up, name="prefect-server-warm-up", daemon=True).start()

    @classmethod
    def start_if_needed(cls) -> "_EarlyServer | None":
        return None if os.environ.get("PREFECT_API_URL") else cls()

    def confirm(self) -> "_EarlyServer | None":
        """Once Prefect is imported: None (and stopped) when its settings name a server after all."""
        from prefect.settings import PREFECT_API_URL

        if PREFECT_API_URL.value():
            self.stop()
            return None
        return self

    def _warm_up(self, timeout_s: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    healthy = client.get("/health").status_code == 200
                except httpx.HTTPError:
                    healthy = False
                if healthy:
                    self.ready.set()
                    try:  # only a head start: a failure here is the flow's to meet and report
                        client.post("/flows/filter", json={"limit": 1})
                        client.post("/flow_runs/filter", json={"limit": 1})
                    except httpx.HTTPError:
                        pass
                    return
                time.sleep(0.1)

    def wait(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Prefect's temporary server exited with code {self.process.returncode} while starting")
            if self.ready.wait(0.1):
                logging.getLogger("prefect").info("Started temporary server on %s", self.url.removesuffix("/api"))
                return
        raise RuntimeError(f"Prefect's temporary server did not answer on {self.url} within {timeout_s:.0f} s")

    def settings(self):  # noqa: ANN201  (a Prefect settings context manager)
        from prefect.settings import PREFECT_API_URL, temporary_settings

        return temporary_settings(updates={PREFECT_API_URL: self.url})

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_SERVER: list[_EarlyServer] = []


def _start_server() -> _EarlyServer | None:
    server = _EarlyServer.start_if_needed()
    if server is not None:
        _SERVER.append(server)
    return server


def _confirm(server: _EarlyServer | None) -> _EarlyServer | None:
    if server is None:
        return None
    confirmed = server.confirm()
    if confirmed is None:
        _SERVER.remove(server)
    return confirmed


def _api(server: _EarlyServer | None) -> contextlib.AbstractContextManager:
    """The flow's API: the early server once it answers, or Prefect's own choice (PREFECT_API_URL, or its
    temporary server) when none was started here."""
    if server is None:
        return contextlib.nullcontext()
    server.wait()
    return server.settings()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    os.write(2, b"textcls: stopped by SIGTERM before the run started or after it ended\n")
    for server in _SERVER:
        server.stop()
    os._exit(128 + signum)  # not sys.exit: Prefect's temporary server may be draining queues and hang the exit


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.set)  # fails before any work on a bad key or value
    resume_run_id = None
    if args.resume:
        if args.set:
            raise ConfigError("--resume takes the interrupted run's own config; drop the --set options.")
        from tasks.tracking import resolve_resume, resolve_tracking_uri

        cfg, resume_run_id = resolve_resume(args.resume, resolve_tracking_uri(cfg.tracking.uri))
    preflight(cfg)  # data, gate files, pretrained folder: before a server or run starts (the flow checks again)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    server = _start_server()  # starts while Prefect and the flow's modules import
    _prepare_env(args)
    server = _confirm(server)
    from flows.train import train_text_classifier

    if server is not None:
        _prefetch_tracking_store(cfg.tracking.uri)  # while the temporary server finishes starting
    # SIGTERM outside the run's stages ends quietly; from its MLflow run on, the run's guard (tasks/runguard.py)
    # takes over: marks the run KILLED, keeps the checkpoint and prints how to resume
    with _api(server):
        summary = train_text_classifier(config=cfg, summary_path=args.summary, resume_run_id=resume_run_id)
    print_summary(summary)
    if args.summary:
        print(f"summary JSON    {args.summary}")
    return 0


def _prefetch_tracking_store(uri: str) -> None:
    """Import MLflow's database store now (about 1 s), while Prefect's temporary server is still starting: the
    run's first MLflow call would otherwise import it on the flow's critical path. Nothing for an HTTP server."""
    from tasks.tracking import resolve_tracking_uri

    if resolve_tracking_uri(uri).split(":", 1)[0].split("+", 1)[0] in ("sqlite", "postgresql", "mysql", "mssql"):
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401


def cmd_tune(args: argparse.Namespace) -> int:
    overrides = [*args.set, *([f"tune.trials={args.trials}"] if args.trials else []),
                 *(["tune.final_run=false"] if args.no_final_run else [])]
    cfg = load_config(args.config, overrides)  # the space, tune.parallel and every key checked before any server starts
    preflight(cfg)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    server = _start_server()  # starts while Prefect and the flow's modules import
    _prepare_env(args)
    server = _confirm(server)
    from flows.tune import tune_text_classifier

    with _api(server):
        summary = tune_text_classifier(config=cfg, summary_path=args.summary)
    t = summary["tune"]
    print("\n== textcls tune finished ==")
    print(f"study           {t['study_name']} in {t['storage']}: {t['trials']['total']} trials "
          f"({t['trials']['COMPLETE']} complete, {t['trials']['PRUNED']} pruned, {t['trials']['FAIL']} failed), {t['seconds']:.0f} s")
    default = f"   (starting config {t['default_value']:.4f})" if t.get("default_value") is not None else ""
    print(f"best            trial {t['best_trial']}: validation {t['select_metric']} {t['best_value']:.4f}{default}")
    print(f"changed keys    {json.dumps(t['changed'], ensure_ascii=False, default=str)}")
    print(f"best config     {t['best_config_path']}")
    print(f"trials          {t['trials_path']}  (MLflow run {summary['mlflow_run_id']}, one nested run per trial)")
    if summary.get("final"):
        print_summary(summary["final"])
    else:
        print(f"train it        textcls run --config {t['best_config_path']}")
    if args.summary:
        print(f"summary JSON    {args.summary}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, [*args.set, f"data.path={args.data}"])
    d = cfg.data
    check_dataset_source(d.path, d.text_column, d.label_column, d.encoding, d.metadata_columns)
    _prepare_env(args)
    from flows.evaluate import evaluate_text_classifier

    r = evaluate_text_classifier(model_uri=args.model, config=cfg)
    m = r["metrics"]
    print("\n== textcls evaluation finished ==")
    print(f"model           {r['model_uri']} on {d.path}: {r['rows_scored']} rows scored, {r['rows_dropped']} dropped (empty text or label)")
    print(f"accuracy        {m['test_accuracy']:.4f}   macro-F1 {m['test_macro_f1']:.4f}   badcases {m['test_badcases']:.0f}")
    if r.get("relabel_queue_path"):
        print(f"label errors    {m['suspected_label_errors']:.0f} suspected: {r['relabel_queue_path']}")
    print(f"report          {r['report_path']}")
    print(f"MLflow          {redact_uri(r['mlflow_tracking_uri'])}  run {r['mlflow_run_id']}")
    return 0


def cmd_stress(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, [*args.set, f"data.path={args.data}"])  # bad perturbation names / rates fail here
    d = cfg.data
    check_dataset_source(d.path, d.text_column, d.label_column, d.encoding, [])
    _prepare_env(args)
    from flows.stress import stress_text_classifier

    r = stress_text_classifier(model_uri=args.model, config=cfg)
    print("\n== textcls stress tests finished ==")
    print(f"model           {r['model_uri']} on {d.path}: {r['n']} of {r['rows_scored']} usable rows (stress.max_texts); "
          f"unperturbed accuracy {r['clean']['accuracy']:.4f}, macro-F1 {r['clean']['macro_f1']:.4f}")
    print(f"{'perturbation':<20}{'accuracy':>10}{'Δacc':>9}{'macro-F1':>10}{'flip rate':>11}{'Δconf':>9}")
    for row in r["table"]:
        print(f"{row['perturbation']:<20}{row['accuracy']:>10.4f}{row['accuracy_delta']:>+9.4f}{row['macro_f1']:>10.4f}"
              f"{row['flip_rate']:>11.4f}{row['confidence_change']:>+9.4f}")
    print(f"report          {r['html_path']}")
    print(f"MLflow          {r['mlflow_tracking_uri']}  run {r['mlflow_run_id']}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.set)
    _prepare_env(args)
    from flows.predict import batch_predict

    model = args.model or f"models:/{cfg.registry.model_name}@champion"
    r = batch_predict(input_path=args.input, output_path=args.output, model_uri=model, text_column=args.text_column,
                      tracking_uri=cfg.tracking.uri, monitor=cfg.monitor, experiment=cfg.tracking.experiment)
    print(f"scored {r['rows']} rows with {r['model_uri']} -> {r['output']}  {r['label_counts']}")
    if r.get("drift"):
        d = r["drift"]
        print(f"drift           {'DETECTED: ' + ', '.join(d['drifted']) if d['drift_detected'] else 'none'} ({d['report_path']})")
    return 0


def cmd_relabel(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, [*args.set, f"data.path={args.data}"])
    _prepare_env(args)
    from flows.relabel import relabel_apply

    r = relabel_apply(queue_path=args.queue, config=cfg, output_path=args.output or "")
    print("\n== textcls relabel finished ==")
    print(f"corrected copy  {r['path']}  ({r['rows_out']} of {r['rows_in']} rows; source {args.data} unchanged)")
    print(f"changes         {r['relabelled']} relabelled, {r['dropped']} dropped, {r['kept']} kept ({r['undecided']} undecided)")
    print(f"changelog       {r['changelog_path']}")
    print(f"MLflow          dataset version {r['sha256'][:16]} (parent {r['parent_sha256'][:16]}), run {r['mlflow_run_id']}")
    print(f"retrain         textcls run --set data.path={r['path']}")
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, [*args.set, *([f"data.text_column={args.text_column}"] if args.text_column else [])])
    from textcls_core.evaluation.drift import read_texts

    read_texts(args.data, cfg.data.text_column, cfg.data.encoding)  # a bad file fails before a server starts
    _prepare_env(args)
    from flows.monitor import monitor

    r = monitor(data_path=args.data, model_uri=args.model or "", config=cfg)
    print(f"\n== textcls monitor: {r['rows']} rows of {args.data} vs the training profile of {r['model_uri']} ==")
    for c in r["checks"]:
        value = "n/a" if c["value"] is None else f"{c['value']:.4f}"
        print(f"{c['check']:<19} {c['statistic']} {value:>8} (threshold {c['threshold']})  {'DRIFT' if c['drift'] else 'ok':<5}  "
              f"training: {c['reference']} | now: {c['current']}")
    print(f"drift           {'DETECTED: ' + ', '.join(r['drifted']) + ' (event textcls.drift.detected)' if r['drift_detected'] else 'none'}")
    print(f"report          {r['report_path']}  MLflow run {r['mlflow_run_id']}")
    return 0


def _registry_target(args: argparse.Namespace) -> tuple[str, str, dict[str, Any]]:
    cfg = load_config(args.config, args.set)
    from tasks.tracking import resolve_tracking_uri

    # promote/rollback wait for the same registry lock as a run's package step (registry.lock_uri, lock_timeout_s)
    lock = {"lock_uri": cfg.registry.lock_uri, "lock_timeout_s": cfg.registry.lock_timeout_s}
    return cfg.registry.model_name, resolve_tracking_uri(cfg.tracking.uri), lock


def cmd_promote(args: argparse.Namespace) -> int:
    name, uri, lock = _registry_target(args)
    from tasks.registry import promote_version

    previous = promote_version(name, args.version, args.reason, uri, **lock)
    print(f"{name}: version {args.version} is now @champion (was {previous or 'none'}); `textcls rollback` undoes it")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    name, uri, lock = _registry_target(args)
    from tasks.registry import rollback_champion

    old, new = rollback_champion(name, args.reason, uri, **lock)
    print(f"{name}: @champion rolled back from version {old} to version {new}")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.set)
    print(json.dumps(redact_values(cfg.model_dump()), ensure_ascii=False, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="textcls", description="Train, evaluate and register Chinese text classifiers.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, help_ in (("run", cmd_run, "run the training pipeline end to end"),
                            ("tune", cmd_tune, "search tune.space with Optuna, then train and register the best config"),
                            ("evaluate", cmd_evaluate, "evaluate a registered model on a labelled file"),
                            ("predict", cmd_predict, "score a file with a registered model (default @champion)"),
                            ("stress", cmd_stress, "stress-test a registered model on perturbed texts of a labelled file"),
                            ("promote", cmd_promote, "make a registered version the champion, by hand"),
                            ("rollback", cmd_rollback, "give @champion back to the previous champion"),
                            ("relabel", cmd_relabel, "apply a reviewed relabel queue: a corrected copy of the data"),
                            ("monitor", cmd_monitor, "compare a new file with a registered version's training data (drift)"),
                            ("check-config", cmd_check_config, "validate a config and print it resolved")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", default="conf/default.yaml" if Path("conf/default.yaml").is_file() else None,
                       help="YAML config (default: conf/default.yaml when present, else built-in defaults)")
        p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value (repeatable)")
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
        p.set_defaults(func=fn)
    sub.choices["run"].add_argument("--summary", metavar="PATH", help="also write the run summary JSON here")
    sub.choices["run"].add_argument("--resume", metavar="RUN", help="resume an interrupted run: its folder (runs/<run>) or MLflow run id")
    tune = sub.choices["tune"]
    tune.add_argument("--trials", type=int, metavar="N", help="trials in the study in all (tune.trials)")
    tune.add_argument("--no-final-run", action="store_true", help="only search and write best_config.yaml (tune.final_run=false)")
    tune.add_argument("--summary", metavar="PATH", help="also write the tune summary JSON here")
    sub.choices["evaluate"].add_argument("--model", required=True, metavar="URI", help="models:/<name>@<alias> or models:/<name>/<version>")
    sub.choices["stress"].add_argument("--model", required=True, metavar="URI", help="models:/<name>@<alias> or models:/<name>/<version>")
    sub.choices["stress"].add_argument("--data", required=True, metavar="FILE", help="labelled file (columns from data.text_column / data.label_column)")
    sub.choices["predict"].add_argument("--input", required=True, metavar="FILE", help=".csv, .tsv, .jsonl, .parquet or .xlsx")
    sub.choices["predict"].add_argument("--output", required=True, metavar="FILE", help=".csv or .parquet")
    sub.choices["predict"].add_argument("--model", metavar="URI", help="default models:/<registry.model_name>@champion")
    sub.choices["predict"].add_argument("--text-column", default="text")
    sub.choices["promote"].add_argument("--version", required=True)
    sub.choices["promote"].add_argument("--reason", required=True, help="why, recorded on the version")
    sub.choices["rollback"].add_argument("--reason", default="rollback", help="why, recorded on the versions")
    sub.choices["evaluate"].add_argument("--data", required=True, metavar="FILE", help="labelled CSV/TSV (columns from data.text_column / data.label_column)")
    rel = sub.choices["relabel"]
    rel.add_argument("action", choices=["apply"], help="apply: write the corrected copy and its changelog")
    rel.add_argument("--queue", required=True, metavar="FILE", help="the reviewed relabel_queue.csv (decision column filled)")
    rel.add_argument("--data", required=True, metavar="FILE", help="the data file the queue was made from (never modified)")
    rel.add_argument("--output", metavar="FILE", help="corrected copy (default <data stem>.relabeled<ext> beside it)")
    mon = sub.choices["monitor"]
    mon.add_argument("--data", required=True, metavar="FILE", help="new, unlabelled file: .csv, .tsv, .jsonl, .parquet or .xlsx")
    mon.add_argument("--model", metavar="URI", help="default models:/<registry.model_name>@champion")
    mon.add_argument("--text-column", help="default data.text_column")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TextclsError as exc:
        if args.debug:
            raise
        print(f"textcls: error: {redact_text(str(exc))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("textcls: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
