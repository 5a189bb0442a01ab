"""`textcls run` starts Prefect's temporary server before it imports Prefect (flows/cli.py::_EarlyServer): only when
no PREFECT_API_URL is set, and it stops that server again when Prefect's own settings (a profile, prefect.toml) turn
out to name one."""

from __future__ import annotations

import subprocess

import flows.cli as cli


def _fake_server(monkeypatch):
    """A stand-in for uvicorn that never answers (the test needs a process, not a server)."""
    started, real_popen = [], subprocess.Popen

    def popen(args, env=None):
        started.append((args, env))
        return real_popen(["sleep", "60"])

    monkeypatch.setattr(cli.subprocess, "Popen", popen)
    return started


def test_no_server_when_the_environment_names_one(monkeypatch):
    started = _fake_server(monkeypatch)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert cli._EarlyServer.start_if_needed() is None and started == []


def test_a_server_named_by_prefects_settings_stops_the_early_one(monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    started = _fake_server(monkeypatch)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    server = cli._start_server()
    assert server is not None and server in cli._SERVER
    args, env = started[0]
    assert args[1:3] == ["-m", "uvicorn"] and "prefect.server.api.server:create_app" in args
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false" and env["PREFECT__SERVER_EPHEMERAL"] == "1"
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:4200/api"}):  # as a profile would set it
        assert cli._confirm(server) is None
    assert server.process.poll() is not None and server not in cli._SERVER  # stopped, and not stopped again at exit


def test_with_no_server_named_the_early_one_is_kept(monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    _fake_server(monkeypatch)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    server = cli._start_server()
    try:
        with temporary_settings(updates={PREFECT_API_URL: None}):
            assert cli._confirm(server) is server and server.process.poll() is None
    finally:
        server.stop()
        cli._SERVER.remove(server)
