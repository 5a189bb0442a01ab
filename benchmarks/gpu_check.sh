#!/usr/bin/env bash
# GPU proof for issue #17, as one command on a device machine (torch + transformers; no prefect/mlflow/jieba/snownlp/pydantic).
#
# 1. here, on the CPU, once (about 1 min; writes runs/gpu_prep, 2 MiB, git-ignored):
#      .venv/bin/python benchmarks/gpu_prep.py
# 2. on the device machine, one call of the device tool:
#      run(command="bash benchmarks/gpu_check.sh", carry=["runs/gpu_prep"], timeout_s=540)
#    It stops itself after GPU_CHECK_BUDGET seconds (default 450: under 8 minutes), skipping steps that would not fit,
#    and leaves gpu_results.md / gpu_results.json in $OUT (or runs/gpu_check when OUT is unset).
# 3. append gpu_results.md to benchmarks/RESULTS.md.
# Dry run on a machine without a GPU: PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh --dry-run
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET:-450}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# the budget bounds the steps; the timeout is a backstop 30 s later (results are written after every step)
# $PYTHON unquoted on purpose: it may carry arguments (the dry-run test runs it through an import blocker)
exec timeout --signal=KILL "$((BUDGET + 30))" $PYTHON benchmarks/gpu_check.py --budget "$BUDGET" "$@"
