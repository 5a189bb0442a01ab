"""The `textcls` console script (flows/entry.py): after the command, the process ends without Python's module
teardown, yet with the command's exit code, all of its output, and every exit handler run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import atexit, sys
import flows.cli
from flows import entry

def command():
    atexit.register(lambda: open(sys.argv[1], "w").write("handler ran"))  # registered during the command
    sys.stdout.write("x" * 200_000 + "\\nend\\n")  # unflushed at return
    return int(sys.argv[2])

flows.cli.main = command
sys.exit(entry.main())
"""


def _entry(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_exit_code_output_and_handlers_survive_the_quick_exit(tmp_path):
    marker = tmp_path / "marker"
    for code in (0, 3):
        done = _entry(str(marker), str(code))
        assert done.returncode == code
        assert done.stdout.endswith("end\n") and done.stdout.count("x") == 200_000
        assert marker.read_text() == "handler ran"
        marker.unlink()


def test_the_real_command_line_keeps_its_exit_codes(tmp_path):
    run = [sys.executable, "-c", "import sys; from flows.entry import main; sys.exit(main())"]
    ok = subprocess.run(run + ["check-config", "--config", "conf/default.yaml"], capture_output=True, text=True, cwd=ROOT,
                        timeout=120)
    assert ok.returncode == 0 and json.loads(ok.stdout)["model"]["name"] == "textcnn"
    bad = subprocess.run(run + ["check-config", "--config", str(tmp_path / "missing.yaml")], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("textcls: error: Config file") and "Traceback" not in bad.stderr
    usage = subprocess.run(run + ["no-such-command"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert usage.returncode == 2 and "invalid choice" in usage.stderr
