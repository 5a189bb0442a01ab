"""Two flow runs registering the same model name at the same moment, under a real (test) Prefect server: the
better model ends @champion whichever registers first, both versions are in the registry log, and the events
reach the server. Slow: two small trainings at once."""

from __future__ import annotations

import threading

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
    configs = {"good": small_config(tmp_path / "good", uri, *common),
               # a learning rate that leaves the network at chance: only the gate can keep it from @champion
               "bad": small_config(tmp_path / "bad", uri, *common, "train.lr=1e-7", "train.epochs=1")}
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
    from prefect.events.filters import EventFilter, EventNameFilter

    with get_client(sync_client=True) as prefect:
        page = prefect.read_events(EventFilter(event=EventNameFilter(prefix=["textcls."])), limit=50)
    names = [(e.event, e.resource.get("textcls.model.version")) for e in page.events]
    assert names.count(("textcls.model.registered", "1")) == 1 and names.count(("textcls.model.registered", "2")) == 1
    assert ("textcls.model.promoted", good["model_version"]) in names

    # the README's automation on textcls.gate.failed is accepted by the server
    from prefect.events.schemas.automations import AutomationCore

    spec = yaml.safe_load(open("automations/gate_failed.yaml", encoding="utf-8"))
    with get_client(sync_client=True) as prefect:
        assert prefect.create_automation(AutomationCore.model_validate(spec))
