"""The deployed flows, each with a whole-flow time limit (prefect.yaml entrypoints point here).

Inside a run, the stage watchdog (tasks/runguard.py, run.stage_timeout_s) is what ends a stuck stage: it works
even when the flow's thread is blocked. The flow timeout is Prefect's own backstop on top, in the Prefect UI as
a TimedOut state; it is set well above the stage bounds of a normal nightly run so it never fires first.
"""

from __future__ import annotations

from flows.evaluate import evaluate_text_classifier
from flows.predict import batch_predict
from flows.train import train_text_classifier
from flows.tune import tune_text_classifier

TRAIN_TIMEOUT_S = 6 * 3600  # a nightly retrain on the default model takes minutes; six hours means it is stuck
EVALUATE_TIMEOUT_S = 2 * 3600
PREDICT_TIMEOUT_S = 4 * 3600  # batch scoring of a large export
TUNE_TIMEOUT_S = 24 * 3600  # a search of many trials; bound it by tune.trials / tune.timeout_s, this is the backstop

train_with_timeout = train_text_classifier.with_options(timeout_seconds=TRAIN_TIMEOUT_S)
evaluate_with_timeout = evaluate_text_classifier.with_options(timeout_seconds=EVALUATE_TIMEOUT_S)
predict_with_timeout = batch_predict.with_options(timeout_seconds=PREDICT_TIMEOUT_S)
tune_with_timeout = tune_text_classifier.with_options(timeout_seconds=TUNE_TIMEOUT_S)
