"""Local path overhead: messages/s through `enriched_messages` against raw `predict`.

    python -m benchmarks.local_path [--messages 3000] [--out FILE]

One simulated day goes through the daily job (raw → validated → enriched, all checks) in a
temporary data directory, with the production intent model (trained once and cached by
benchmarks/serving.py's `load_or_train_model`) registered as production, no API key. Then
the same model's raw `predict` runs on the same validated texts in the same process. The
ratio predict-rate / enrich-rate is the cost of everything around the model: registry
lookup, routing policy, automation decision, records (the asset's own duration, so not the
IO manager's Parquet read or write). The job runs twice; the first run pays the artifact
and encoder load, the second is the steady state.
Results: benchmarks/results/local_path.json. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd
from dagster import AssetKey, AssetRecordsFilter, instance_for_test

from ai_assets.cli.pipeline_runs import QUIET_CONSOLE
from ai_assets.data.datasets import split_banking77
from ai_assets.definitions import build_defs
from ai_assets.ops_db import OpsDb
from ai_assets.simulator import simulate_day, write_day
from benchmarks.resources import scratch_resources
from benchmarks.serving import ROOT, load_or_train_model, machine

RESULTS = Path(__file__).resolve().parent / "results" / "local_path.json"
DAY = date(2025, 3, 3)  # a Monday: --messages is that day's volume


def enriched_duration_ms(instance) -> tuple[float, int]:
    record = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("enriched_messages"), asset_partitions=[DAY.isoformat()]),
        limit=1).records[0]
    meta = record.asset_materialization.metadata
    return float(meta["duration_ms"].value), int(meta["dagster/row_count"].value)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    split = split_banking77()
    model, model_info = load_or_train_model(split)
    artifact = ROOT / model_info["artifact"]
    with tempfile.TemporaryDirectory() as tmp, instance_for_test() as instance:
        root = Path(tmp)
        url = f"sqlite:///{root / 'ops.db'}"
        with OpsDb.open(url) as db:
            record = db.registry.register_candidate(
                "intent_model", metrics={"encoder": model.info["encoder"]}, artifact_uri=str(artifact),
                training_data_fingerprint=model.fingerprint, confidence_threshold=min(model.threshold, 1.0))
            db.registry.promote("intent_model", record.version, actor="bench", reason="benchmark")
        files, resolved, ledger = simulate_day(DAY, split["replay"], args.messages, {}, seed=7, pii_rate=0.02)
        write_day(root / "landing", DAY, files, resolved, ledger)
        defs = build_defs(scratch_resources(root))  # its ops database is `url`
        job = defs.resolve_job_def("ingestion_job")
        runs = []
        for label in ("cold", "warm"):
            started = time.perf_counter()
            assert job.execute_in_process(partition_key=DAY.isoformat(), instance=instance,
                                          run_config=QUIET_CONSOLE).success
            wall = time.perf_counter() - started
            step_ms, rows = enriched_duration_ms(instance)
            runs.append({"run": label, "rows": rows, "enriched_messages_ms": round(step_ms, 1),
                         "enriched_msg_per_s": round(rows / (step_ms / 1000), 1),
                         "whole_job_seconds": round(wall, 2), "whole_job_msg_per_s": round(rows / wall, 1)})
        texts = list(pd.read_parquet(root / "storage" / "validated_messages" / f"{DAY}.parquet")["text"])
    started = time.perf_counter()
    model.predict(texts, top_k=1)
    predict_s = time.perf_counter() - started
    predict_rate = len(texts) / predict_s
    warm = runs[-1]
    report = {
        "benchmark": "local_path",
        "environment": machine(),
        "intent_model": {k: model_info.get(k) for k in ("source", "training_seconds", "artifact")},
        "messages_validated": len(texts),
        "raw_predict": {"seconds": round(predict_s, 3), "msg_per_s": round(predict_rate, 1)},
        "runs": runs,
        "overhead_ratio_predict_over_enriched_warm": round(predict_rate / warm["enriched_msg_per_s"], 3),
        "notes": "enriched_messages time is the asset's own duration_ms (registry, model call, routing, "
                 "records; not the IO manager's Parquet write); cold includes loading the artifact and "
                 "the sentence encoder. Ratio 1.0 = no overhead.",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("messages_validated", "raw_predict", "runs",
                                             "overhead_ratio_predict_over_enriched_warm")}, indent=1))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
