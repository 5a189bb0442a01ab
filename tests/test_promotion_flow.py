"""Two flow runs registering the same model name at the same moment, under a real (test) Prefect server: the
better model ends @champion whichever registers first, both versions are in the registry log, and the events
reach the server. Slow: two small trainings at once."""

from __future__ import annotations

import threading
import time

import pytest
import yaml
from mlflow import MlflowClient

from flows.train import train_text_classifier
from tasks.registry import current_champion, read_log
from tests.conftest import small_config


@pytest.mark.slow
def test_two_flow_runs_register_at_once(tmp_path, prefect_server):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = ["split.mode=hash", "registry.min_shared_rows=50", "registry.model_name=textcls-race",
              "registry.baseline_check=false", "stress.enabled=false", "evaluate.label_error_folds=0"]
    # Both runs train a network at the same time in this process, so they share torch's global random generator and
    # each one's dropout and init draws depend on how the threads interleave: a 4-epoch network on 960 texts then
    # ended anywhere from clearly better than chance to barely (test macro-F1 0.37 once), too close for the gate.
    # The good run also fits tfidf_lr (deterministic) and ships the better of the two on validation; the bad run
    # ships only its network (so the two never ship the same tfidf_lr and tie).
    configs = {"good": small_config(tmp_path / "good", uri, *common, "model.candidates=[model,tfidf_lr]", "train.epochs=4"),
               # a learning rate that leaves the network at chance: only the gate can keep it from @champion
               "bad": small_config(tmp_path / "bad", uri, *common, "model.candidates=[model]", "train.lr=1e-7", "train.epochs=1")}
    start = threading.Barrier(2, timeout=120)
    results, errors = {}, {}

    def run(which):
        try:
            start.wait()
            results[which] = train_text_classifier(config=configs[which])
        except BaseException as exc:  # reported below
            errors[which] = exc

    threads = [threading.Thread(target=run, args=(w,)) for w in configs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(900)
    assert not errors, errors
    good, bad = results["good"], results["bad"]
    client = MlflowClient(uri)
    assert current_champion(client, "textcls-race") == good["model_version"]
    assert bad["model_alias"] == "challenger" or bad["model_version"] < good["model_version"]
    log = read_log(client, "textcls-race")
    assert sorted(e["version"] for e in log if e["action"] == "registered") == ["1", "2"]
    assert good["gate.outcome"] in ("no_champion", "compared") and bad["gate.outcome"] in ("no_champion", "compared")

    # the events reached the Prefect server, with the version as resource
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    def model_events():
        with get_client(sync_client=True) as prefect:
            page = prefect.read_events(EventFilter(event=EventNameFilter(prefix=["textcls."]),
                                                   resource=EventResourceFilter(id_prefix=["textcls.model.textcls-race."])), limit=50)
        # this model's events only: the session's Prefect server also holds other tests' textcls.* events
        return [(e.event, e.resource.get("textcls.model.version")) for e in page.events
                if e.resource.get("textcls.model.name") == "textcls-race"]

    # events travel through the client's background worker and the server's ingest queue: the last one emitted can
    # reach the read API a few seconds after the flow returns, so wait for it (bounded) rather than read once
    deadline = time.monotonic() + 60
    names = model_events()
    while ("textcls.model.promoted", good["model_version"]) not in names and time.monotonic() < deadline:
        time.sleep(1)
        names = model_events()
    assert names.count(("textcls.model.registered", "1")) == 1 and names.count(("textcls.model.registered", "2")) == 1
    assert ("textcls.model.promoted", good["model_version"]) in names

    # the README's automation on textcls.gate.failed is accepted by the server
    from prefect.events.schemas.automations import AutomationCore

    spec = yaml.safe_load(open("automations/gate_failed.yaml", encoding="utf-8"))
    with get_client(sync_client=True) as prefect:
        assert prefect.create_automation(AutomationCore.model_validate(spec))


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL 15 on loopback (trust auth), run as the postgres user."""
    import os
    import shutil
    import socket
    import subprocess
    from pathlib import Path

    pgbin = Path("/usr/lib/postgresql/15/bin")
    if not (pgbin / "initdb").is_file() or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL 15 binaries or runuser not available")
    import tempfile

    data = Path(tempfile.mkdtemp(prefix="textcls-pg-"))   # not under pytest's 0700 tmp root: the postgres user must enter it
    os.chmod(data, 0o777)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*as_pg, str(pgbin / "initdb"), "-D", str(data / "db"), "-U", "postgres", "--auth=trust"], check=True,
                   capture_output=True)
    subprocess.run([*as_pg, str(pgbin / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "log"), "-w", "-t", "120",
                    "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_pg, str(pgbin / "pg_ctl"), "-D", str(data / "db"), "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.slow
def test_postgres_advisory_lock_serialises_writers(postgres):
    from tasks.registry import RegistryLockTimeout, registry_lock

    held, release, order = threading.Event(), threading.Event(), []

    def holder():
        with registry_lock("http://mlflow:5000", "textcls-pg", lock_uri=postgres) as what:
            order.append(("a", what))
            held.set()
            release.wait(60)
        order.append(("a", "released"))

    t = threading.Thread(target=holder)
    t.start()
    held.wait(60)
    with pytest.raises(RegistryLockTimeout, match="PostgreSQL advisory lock for 'textcls-pg'"):
        with registry_lock(postgres, "textcls-pg", timeout_s=1):
            pass
    with registry_lock(postgres, "another-model", timeout_s=5):   # one lock per model name
        order.append(("b", "other name"))
    release.set()
    with registry_lock(postgres, "textcls-pg", timeout_s=60):
        order.append(("c", "after release"))
    t.join(60)
    assert order[0][1].startswith("postgresql advisory lock") and [o[0] for o in order] == ["a", "b", "a", "c"]
