"""The benchmark scripts still run (tiny sizes, CPU); their figures are checked for sense, never for speed.

Also the GPU check's dry run, on a Python that cannot see prefect/mlflow/jieba/snownlp/pydantic (as on the device).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import train_throughput as tt  # noqa: E402

from textcls_core.text.batching import EncodedDataset  # noqa: E402

# Runs a script with the device machine's missing packages hidden from every import finder and from importlib.metadata.
HIDE_PACKAGES = '''
import runpy, sys
BLOCKED = {"prefect", "mlflow", "jieba", "snownlp", "pydantic"}
class Hide:
    def __init__(self, finders):
        self.finders = finders
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return None
        for f in self.finders:
            spec = f.find_spec(name, path, target) if hasattr(f, "find_spec") else None
            if spec is not None:
                return spec
        return None
    def find_distributions(self, *args, **kwargs):
        for f in self.finders:
            for d in getattr(f, "find_distributions", lambda *a, **k: [])(*args, **kwargs):
                if (d.metadata["Name"] or "").lower() not in BLOCKED:
                    yield d
    def invalidate_caches(self):
        for f in self.finders:
            getattr(f, "invalidate_caches", lambda: None)()
sys.meta_path[:] = [Hide(list(sys.meta_path))]
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
'''


def synthetic_corpus(tmp_path: Path, n_train: int = 128, n_val: int = 64) -> tt.Corpus:
    """Texts whose every token names the label (token 5 or 6), lengths 3..20: any model that trains at all gets them right."""
    from transformers import BertTokenizer

    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    (tok_dir / "vocab.txt").write_text("\n".join([*tt.SPECIALS, "好", "差", "中"]) + "\n", encoding="utf-8")
    BertTokenizer.from_pretrained(str(tok_dir)).save_pretrained(str(tok_dir))
    g = torch.Generator().manual_seed(0)

    def make(n: int) -> EncodedDataset:
        labels = torch.randint(0, 2, (n,), generator=g).tolist()
        lengths = torch.randint(1, 19, (n,), generator=g).tolist()
        return EncodedDataset([[2] + [5 + y] * k + [3] for y, k in zip(labels, lengths)], labels)

    return tt.Corpus(make(n_train), make(n_val), 0, ["neg", "pos"], tok_dir, 32)


def test_length_grouped_trainer_is_scored_against_its_own_predictions(tmp_path):
    # the old benchmark reported 0.53 here: Trainer.predict read the val set length-grouped, out of the labels' order
    corpus = synthetic_corpus(tmp_path)
    bert = tt.save_random_bert(tmp_path / "bert", corpus, "tiny")
    p = tt.Params(epochs=3, batch_size=16, lr=3e-3)
    out = tt.run_trainer(tt.SETUPS["trainer-grouped"], bert, corpus, p, torch.device("cpu"))
    assert out.samples == 3 * 128 and out.seconds > 0
    assert out.val_accuracy >= 0.95


def test_engine_and_trainer_take_the_same_steps_from_the_same_weights(tmp_path):
    corpus = synthetic_corpus(tmp_path)
    bert = tt.save_random_bert(tmp_path / "bert0", corpus, "tiny", dropout=0.0)
    par = tt.loss_parity(bert, corpus, tt.Params(batch_size=16, lr=1e-3), torch.device("cpu"), steps=8)
    assert par["steps"] == 8
    # fp32 on the CPU: same batches, schedule and optimizer give the same losses up to float rounding;
    # a shifted batch order or a warmup off by one step moves them by 1e-3 or more
    assert par["max_abs_diff"] < 1e-4, par
    assert par["engine_losses"][0] == pytest.approx(par["trainer_losses"][0], abs=1e-5)
    assert par["engine_val_accuracy"] == par["trainer_val_accuracy"]


def test_summary_picks_the_fastest_trainer_row_that_learns():
    rows = {"engine": {"side": "engine", "median": 300.0, "val_accuracy_median": 0.81},
            "trainer-fast-but-chance": {"side": "trainer", "median": 250.0, "val_accuracy_median": 0.52},
            "trainer-learns": {"side": "trainer", "median": 100.0, "val_accuracy_median": 0.80}}
    s = tt.summarize(rows, chance=0.52)
    assert s["best_trainer"] == "trainer-learns" and s["ratio"] == pytest.approx(3.0)
    assert s["val_accuracy_difference"] == pytest.approx(0.01)
    assert rows["trainer-fast-but-chance"]["vs_best_trainer"] == pytest.approx(2.5)


@pytest.mark.slow
def test_train_throughput_benchmark_runs_on_cpu_with_a_tiny_bert(tmp_path):
    out = tmp_path / "figures.json"
    proc = subprocess.run([sys.executable, "benchmarks/train_throughput.py", "--tiny", "--rows", "200", "--max-len", "32",
                           "--rounds", "2", "--no-warmup", "--configs", "engine,trainer-grouped", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    facts = json.loads(out.read_text())
    assert facts["shape"] == "tiny" and facts["rounds"] == 2
    for name in ("engine", "trainer-grouped"):
        row = facts["rows"][name]
        assert len(row["samples_per_s"]) == 2 and all(r > 0 for r in row["samples_per_s"])
        assert row["min"] <= row["median"] <= row["max"]
        assert all(0 <= a <= 1 for a in row["val_accuracy"])
    assert facts["best_trainer"] == "trainer-grouped"
    assert facts["ratio"] == pytest.approx(facts["rows"]["engine"]["median"] / facts["rows"]["trainer-grouped"]["median"])
    assert "ratio engine / trainer-grouped" in proc.stdout


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A small gpu_prep.py folder (300 texts of the built-in corpus), as the CPU side of the GPU check writes it."""
    prep = tmp_path_factory.mktemp("gpu") / "prep"
    proc = subprocess.run([sys.executable, "benchmarks/gpu_prep.py", "--out", str(prep), "--rows", "300"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return prep


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the script runs the GPU steps instead of the dry run")
def test_gpu_check_dry_run_checks_everything_then_stops_without_cuda(prepared, tmp_path):
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert manifest["train"] + manifest["val"] == manifest["texts"] > 250 and manifest["vocab_size"] > 100
    out, hide = tmp_path / "out", tmp_path / "hide.py"
    hide.write_text(HIDE_PACKAGES)
    env = {"PYTHON": f"{sys.executable} {hide}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    run = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run", "--prep", str(prepared), "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "no CUDA device" in run.stdout
    table = (out / "gpu_results.md").read_text()
    assert "| checks | PASS |" in table and "no prefect/mlflow/jieba/snownlp/pydantic imported" in table


def test_gpu_check_refuses_a_folder_prepared_for_other_configs(prepared, tmp_path):
    import shutil

    import gpu_check

    stale = tmp_path / "stale"
    shutil.copytree(prepared, stale)
    configs = json.loads((stale / "train_configs.json").read_text())
    configs["planned"]["engine"]["batch_size"] = 7
    (stale / "train_configs.json").write_text(json.dumps(configs))
    with pytest.raises(ValueError, match="prepare the folder again"):
        gpu_check.check_environment(stale, tmp_path / "scratch")
    with pytest.raises(FileNotFoundError, match="gpu_prep.py"):
        gpu_check.check_environment(tmp_path / "missing", tmp_path / "scratch")
