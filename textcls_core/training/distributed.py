"""Multi-process training through torchrun: the same loop (textcls_core.training.fit) under DistributedDataParallel.

The train task writes a FitSpec to JSON and starts
    python -m torch.distributed.run --nproc_per_node N --nnodes M ... -m textcls_core.training.distributed SPEC.json
Every rank builds the same model from the same files; gloo on CPUs, NCCL on GPUs. Rank 0 alone writes
checkpoints, prints metric lines (`TEXTCLS_METRIC {...}`, which the task forwards to MLflow in batches)
and saves the result (best weights + history) next to the spec.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as torch_dist

from textcls_core.runtime.config import TrainConfig
from textcls_core.runtime.errors import TextclsError
from textcls_core.training.fit import FitSpec, fit
from textcls_core.training.loop import DistContext, pick_device

METRIC_PREFIX = "TEXTCLS_METRIC "
ERROR_PREFIX = "TEXTCLS_ERROR "


def result_paths(spec_path: str | Path) -> tuple[Path, Path]:
    """Where rank 0 writes the best weights and the run facts."""
    base = Path(spec_path).with_suffix("")
    return base.with_name(base.name + ".best.pt"), base.with_name(base.name + ".result.json")


def launch_command(cfg: TrainConfig, spec_path: str | Path, python: str = sys.executable) -> list[str]:
    """The torchrun command line for this node (identical on every node except --node_rank).

    One node: --standalone, so torchrun picks a free port and concurrent trainings never collide.
    """
    head = [python, "-m", "torch.distributed.run", f"--nproc_per_node={cfg.devices}"]
    if cfg.nnodes == 1:
        head.append("--standalone")
    else:
        head += [f"--nnodes={cfg.nnodes}", f"--node_rank={cfg.node_rank}", f"--master_addr={cfg.master_addr}",
                 f"--master_port={cfg.master_port}"]
    return [*head, "-m", "textcls_core.training.distributed", str(spec_path)]


def main(spec_path: str) -> int:
    spec = FitSpec.from_json(spec_path)
    rank, world, local_rank = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    device = pick_device(spec.train.device, local_rank)
    if device.type == "cuda":  # one GPU per process, whatever train.device names
        device = torch.device(f"cuda:{local_rank}")
        torch.cuda.set_device(device)
    torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    dist = DistContext(rank=rank, world_size=world)

    def log_metrics(metrics: dict[str, float], step: int) -> None:
        if dist.is_main:
            print(METRIC_PREFIX + json.dumps({"step": step, "metrics": metrics}), flush=True)

    def message(text: str) -> None:
        if dist.is_main:
            print(text, flush=True)

    try:
        try:
            model, result = fit(spec, device, dist, log_metrics, message)
        except TextclsError as exc:  # a user's mistake: one message for the task to show, not a worker traceback
            if dist.is_main:
                print(ERROR_PREFIX + json.dumps(str(exc)), flush=True)
            return 2
        if dist.is_main:
            best_path, result_path = result_paths(spec_path)
            torch.save(result.best_state, best_path)
            result_path.write_text(json.dumps({
                "best_epoch": result.best_epoch, "best_score": result.best_score, "best_val_accuracy": result.best_val_accuracy,
                "history": result.history, "stopped_early": result.stopped_early, "resumed_from_step": result.resumed_from_step,
                "micro_batch_size": result.micro_batch_size, "steps": result.steps, "world_size": world,
                "device": str(device)}, indent=2), encoding="utf-8")
        torch_dist.barrier()
    finally:
        torch_dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
