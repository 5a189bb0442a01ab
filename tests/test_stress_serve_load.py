"""benchmarks/serve_load.py against a small in-process loopback server that answers like the MLflow scoring server:
the load driver counts statuses and latencies, the bad-request matrix flags a 5xx, and only loopback URLs are driven."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import serve_load  # noqa: E402


class _Handler(BaseHTTPRequestHandler):
    """200 with one prediction per string; 400 for bad JSON or a missing `inputs` list; 500 for > 5,000 texts (a bug to catch)."""

    def log_message(self, *args):
        pass

    def _send(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send(200, {})

    def do_POST(self):
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        try:
            data = json.loads(raw)
        except ValueError:
            return self._send(400, {"error_code": "BAD_REQUEST", "message": "invalid JSON"})
        if not isinstance(data, dict) or not isinstance(data.get("inputs"), list):
            return self._send(400, {"error_code": "BAD_REQUEST", "message": "need inputs"})
        if len(data["inputs"]) > 5000:
            return self._send(500, {"message": "boom"})
        self._send(200, {"predictions": [{"label": "positive"} for _ in data["inputs"]]})


@pytest.fixture
def fake_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_drive_counts_requests_and_latencies(fake_server):
    level = serve_load.drive(fake_server, ["质量很好", "太差了"], clients=3, seconds=30, max_requests=40, pid=None)
    assert level["requests"] == level["ok"] == 40 and level["statuses"] == {"200": 40}  # bounded by count, not time
    assert 0 < level["p50_ms"] <= level["p95_ms"] <= level["p99_ms"]


def test_bad_request_matrix_flags_the_5xx_and_accepts_4xx_or_full_answers(fake_server):
    matrix, background = serve_load.bad_request_matrix(fake_server, ["质量很好", "太差了"] * 10, None, 2, 30)
    by_name = {r["request"]: r for r in matrix}
    assert by_name["malformed JSON"]["status"] == 400 and by_name["malformed JSON"]["acceptable"]
    assert by_name["null"]["status"] == 400 and by_name["wrong field name"]["status"] == 400
    assert by_name["1,000,000-char text"]["status"] == 200 and by_name["1,000,000-char text"]["acceptable"]
    assert by_name["1,000,000-char text"]["bytes"] > 1_000_000
    assert by_name["10,000 texts"]["status"] == 500 and not by_name["10,000 texts"]["acceptable"]
    assert background["ok"] > 0 and background["statuses"].keys() == {"200"}


def test_answer_must_hold_one_prediction_per_text():
    assert serve_load._answer_is_complete(b'{"inputs": ["a", "b"]}', b'{"predictions": [{}, {}]}')
    assert not serve_load._answer_is_complete(b'{"inputs": ["a", "b"]}', b'{"predictions": [{}]}')
    assert not serve_load._answer_is_complete(b'{"inputs": ["a"]}', b"oops")


def test_only_loopback_urls(capsys):
    with pytest.raises(SystemExit):
        serve_load.main(["--url", "http://10.1.2.3:5000", "--seconds", "1"])
    assert "loopback" in capsys.readouterr().err
