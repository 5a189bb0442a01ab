"""Time from process start to a healthy Prefect API, the way `textcls run` gets there (#19).

--mode prefect: imports the train flow, then starts Prefect's temporary server as Prefect does on the flow's first
API call (SubprocessASGIServer.start, after the imports): the code before #19.
--mode thread: SubprocessASGIServer started in a thread while the imports run (a first attempt: the server module's
import in this process competes with the flow's imports for the GIL).
--mode early: `textcls run`'s way (flows/cli.py _EarlyServer): the uvicorn subprocess starts before the flow's
imports, so the two overlap.
Each mode in its own fresh process (the server is one per process); run each a few times, alternating.

  for i in 1 2 3; do for m in prefect thread early; do .venv/bin/python benchmarks/startup_overlap.py --mode $m; done; done
"""

from __future__ import annotations

import argparse
import time

T0 = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["prefect", "thread", "early"], required=True)
    mode = parser.parse_args().mode
    import flows.cli as cli

    cli._prepare_env(argparse.Namespace(debug=False))
    if mode == "early":
        server = cli._EarlyServer.start_if_needed()
        from flows.train import train_text_classifier  # noqa: F401

        with cli._api(server):
            pass
        server.stop()
    elif mode == "prefect":
        from prefect.server.api.server import SubprocessASGIServer

        from flows.train import train_text_classifier  # noqa: F401,F811

        SubprocessASGIServer().start()
        SubprocessASGIServer().stop()
    else:
        import threading

        from prefect.server.api.server import SubprocessASGIServer

        thread = threading.Thread(target=lambda: SubprocessASGIServer().start())
        thread.start()
        from flows.train import train_text_classifier  # noqa: F401,F811

        thread.join()
        SubprocessASGIServer().stop()
    print(f"{mode}: healthy API {time.perf_counter() - T0:.2f} s after the interpreter started")


if __name__ == "__main__":
    main()
