"""The `textcls` console script: flows.cli.main, then a prompt exit.

A run leaves torch, MLflow, Prefect and pandas imported. When it is over, Python's own exit spends 2-3 s tearing
those modules down, after every file is written and every exit handler has run (benchmarks/RESULTS.md, session 9).
`_exit_now` is the first exit handler registered, so it runs last: Python has already joined the non-daemon
threads and run the handlers of Prefect (log and event queues), of the temporary server, of MLflow, of logging
and of multiprocessing. It then flushes stdout and stderr and ends the process with the command's exit code.

Only the console script does this. `flows.cli.main` called in a process that goes on (the tests, a notebook) keeps
Python's normal exit.
"""

from __future__ import annotations

import atexit
import os
import sys

_CODE = [1]  # an exception that escapes main (--debug) exits 1, as Python would


def _exit_now() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing left to write to
            pass
    os._exit(_CODE[0])


def main() -> int:
    atexit.register(_exit_now)  # before any import that registers a handler of its own: this one runs after them
    from flows.cli import main as cli_main

    try:
        code = cli_main()
    except SystemExit as exc:  # argparse's usage errors and --help
        _CODE[0] = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        raise
    _CODE[0] = code if isinstance(code, int) else 0
    return code
