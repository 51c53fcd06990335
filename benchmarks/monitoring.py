"""`make bench`: what monitoring costs, as a share of the daily job, on days of 10,000 messages.

A model is trained with the shipped configuration (the MiniLM encoder, every training row: what
`make demo` serves), then `--days` consecutive days of `--per-day` messages run through
`ingestion_job`, in a temporary Dagster instance, exactly as the sensor launches them. The
monitoring steps (quality_estimate, input_drift, prediction_drift, pipeline_metrics, cost_report,
business_metrics, with their checks) are timed from Dagster's own step records; their sum over
the run's wall time is the share, the baseline being the same run's other steps. The first day
has no trailing window (its trailing comparison is skipped), the last has `--days - 1` days of
it; the last day is the steady-state figure. The label-feedback run of each day (a day later,
its own run) is timed too.

    python -m benchmarks.monitoring [--per-day 10000] [--days 3] [--out FILE]

Results: benchmarks/results/monitoring.json. Nothing here asserts; the target is a share under 10%.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from dagster import instance_for_test  # noqa: E402

from ai_assets.data.datasets import split_banking77  # noqa: E402
from ai_assets.definitions import build_defs  # noqa: E402
from ai_assets.defs.common import DAILY_MONITORING_ASSETS  # noqa: E402
from ai_assets.simulator import simulate_day, write_day  # noqa: E402
from benchmarks.resources import scratch_resources  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "monitoring.json"
FIRST_DAY = date(2025, 3, 3)  # a Monday
MONITORING_STEPS = {key.to_user_string() for key in DAILY_MONITORING_ASSETS}


def step_seconds(instance, run_id: str) -> dict[str, float]:
    return {s.step_key: s.end_time - s.start_time for s in instance.get_run_step_stats(run_id)
            if s.start_time and s.end_time}


def timed_run(job, instance, day: str) -> tuple[float, dict[str, float], bool]:
    started = time.perf_counter()
    result = job.execute_in_process(partition_key=day, instance=instance, raise_on_error=False)
    return time.perf_counter() - started, step_seconds(instance, result.run_id), result.success


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-day", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ai_assets_bench_monitoring_") as tmp, instance_for_test() as instance:
        root = Path(tmp)
        defs = build_defs(scratch_resources(root))
        started = time.perf_counter()
        trained = defs.resolve_job_def("model_training_job").execute_in_process(instance=instance)
        training_s = time.perf_counter() - started
        print(f"model_training_job: {training_s:.1f} s (success={trained.success})", flush=True)
        pool = split_banking77()["replay"]
        daily, labels = defs.resolve_job_def("ingestion_job"), defs.resolve_job_def("label_feedback_job")
        for offset in range(args.days):
            day = FIRST_DAY + timedelta(days=offset)
            files, resolved, ledger = simulate_day(day, pool, args.per_day, {}, seed=11)
            write_day(root / "landing", day, files, resolved, ledger)
            job_s, steps, ok = timed_run(daily, instance, day.isoformat())
            monitoring = {k: round(v, 3) for k, v in steps.items() if k in MONITORING_STEPS}
            label_s, label_steps, label_ok = timed_run(labels, instance, day.isoformat())
            row = {
                "day": day.isoformat(), "messages": ledger.messages, "success": ok and label_ok,
                "job_seconds": round(job_s, 3), "monitoring_seconds": round(sum(monitoring.values()), 3),
                "monitoring_share": round(sum(monitoring.values()) / job_s, 4),
                "monitoring_steps": monitoring,
                "other_steps_seconds": round(sum(v for k, v in steps.items() if k not in MONITORING_STEPS), 3),
                "label_feedback_seconds": round(label_s, 3),
                "label_feedback_steps": {k: round(v, 3) for k, v in label_steps.items()},
            }
            rows.append(row)
            print(f"{row['day']}: {row['messages']:,} messages, job {job_s:.1f} s, monitoring "
                  f"{row['monitoring_seconds']:.1f} s ({row['monitoring_share']:.1%}); label feedback "
                  f"{label_s:.1f} s", flush=True)
    results = {
        "benchmark": "monitoring",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                        "load_average_1m": round(os.getloadavg()[0], 2)},
        "input": {"per_day": args.per_day, "days": args.days, "encoder": "minilm (shipped configuration)"},
        "model_training_seconds": round(training_s, 1),
        "days": rows,
        "steady_state_share": rows[-1]["monitoring_share"] if rows else None,
        "target_share": 0.10,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"steady-state monitoring share {results['steady_state_share']:.1%} (target < 10%) -> {args.out}")
    return 0 if all(r["success"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
