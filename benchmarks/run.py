"""`make bench`: layer-1 throughput on one simulated day of about 100,000 messages.

One Monday (weekday factor 1.0) of `--per-day 100000` with every fault kind at 1 % is written
to a temporary landing zone, then three things are timed over exactly the same lines:

  parsing      ai_assets.ingestion.parsing.parse_lines over every landing file
  validation   ai_assets.ingestion.validation.validate_partition (GX suite, normalisation, PII masking,
               de-duplication) over the raw rows
  ingestion    the whole `ingestion_job` for that partition via execute_in_process in a temporary
               Dagster instance: read + parse, validate, Parquet writes, every partition check

Each figure is rows (landing lines) per second. A baseline measured in the same process — a
plain `json.loads` loop over the same lines — gives machine-independent ratios:
ratio = stage time / baseline time. Peak RSS is the process's high-water mark after each stage.
Nothing here asserts on time; the numbers are written to benchmarks/results/layer1.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import dagster  # noqa: E402
import pandas as pd  # noqa: E402
from dagster import AssetSelection, Definitions, define_asset_job, instance_for_test  # noqa: E402

from ai_assets.data.datasets import split_banking77  # noqa: E402
from ai_assets.definitions import build_defs  # noqa: E402
from ai_assets.defs.common import FRESHNESS_CHECK_KEYS, INGESTION_GROUP, daily_partitions  # noqa: E402
from ai_assets.defs.ingestion.assets import RAW_COLUMNS  # noqa: E402
from ai_assets.ingestion.parsing import parse_lines  # noqa: E402
from ai_assets.ingestion.validation import validate_partition  # noqa: E402
from ai_assets.simulator import day_volume, parse_fault_spec, simulate_day, write_day  # noqa: E402
from benchmarks.resources import scratch_resources  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "layer1.json"
DAY = date(2025, 3, 3)  # a Monday: WEEKDAY_FACTOR 1.0, so per_day messages exactly
assert DAY.weekday() == 0


def peak_rss_mb() -> float:
    """The process's peak resident set size so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def timed(fn, repeats: int) -> tuple[float, list[float], object]:
    """Best-of-`repeats` wall time, all times, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), [round(t, 4) for t in times], result


def rate(rows: int, seconds: float) -> float:
    return round(rows / seconds, 1) if seconds > 0 else float("inf")


def baseline_loop(files: dict[str, bytes]) -> int:
    """The least any reader of these files must do: split lines, decode, json.loads each."""
    parsed = 0
    for data in files.values():
        for chunk in data.splitlines():
            try:
                json.loads(chunk.decode("utf-8", errors="replace"))
                parsed += 1
            except ValueError:
                pass
    return parsed


def parse_all(files: dict[str, bytes]) -> list:
    rows = []
    for name, data in sorted(files.items()):
        rows += parse_lines(name, data).rows
    return rows


def raw_frame(rows: list) -> pd.DataFrame:
    """raw_messages as the asset builds it, the input of validate_partition."""
    frame = pd.DataFrame([r.__dict__ for r in rows], columns=list(RAW_COLUMNS))
    return frame.astype({"source_file": "string", "line": "int64", "raw": "string", "parse_error": "string"})


# Layer 1 alone: the daily pipeline job also enriches and acts, which other benchmarks measure.
LAYER1_JOB = define_asset_job("layer1_only", partitions_def=daily_partitions,
                              selection=AssetSelection.groups(INGESTION_GROUP)
                              - AssetSelection.checks(*FRESHNESS_CHECK_KEYS))


def run_job(root: Path) -> dict:
    # Layer 1 uses three of them; every job of the code location must have its resources.
    defs = Definitions.merge(build_defs(scratch_resources(root)), Definitions(jobs=[LAYER1_JOB]))
    job = defs.resolve_job_def(LAYER1_JOB.name)
    with instance_for_test() as instance:
        started = time.perf_counter()
        result = job.execute_in_process(partition_key=DAY.isoformat(), instance=instance,
                                        raise_on_error=False)
        seconds = time.perf_counter() - started
        steps = {s.step_key: round(s.end_time - s.start_time, 3)
                 for s in instance.get_run_step_stats(result.run_id) if s.start_time and s.end_time}
        checks = {f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed
                  for e in result.get_asset_check_evaluations()}
        validated = next(m for m in result.get_asset_materialization_events()
                         if m.asset_key.to_user_string() == "validated_messages")
        counts = {k: validated.materialization.metadata[k].value
                  for k in ("rows_in", "validated", "quarantined", "duplicates")}
    return {"seconds": seconds, "success": result.success, "step_seconds": steps, "checks": checks,
            "counts": counts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-day", type=int, default=100_000)
    parser.add_argument("--faults", default="all=0.01")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of parsing and baseline")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rss = {"start": peak_rss_mb()}

    with tempfile.TemporaryDirectory(prefix="ai_assets_bench_") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        files, resolved, ledger = simulate_day(DAY, split_banking77()["replay"], args.per_day,
                                               parse_fault_spec(args.faults))
        write_day(root / "landing", DAY, files, resolved, ledger)
        simulate_seconds = time.perf_counter() - started
        lines = sum(data.count(b"\n") for data in files.values())
        rss["after_simulate"] = peak_rss_mb()
        print(f"simulated {DAY}: {ledger.messages:,} messages, {lines:,} lines in {len(files)} files "
              f"({simulate_seconds:.1f} s)", flush=True)

        base_s, base_runs, parsed_ok = timed(lambda: baseline_loop(files), args.repeats)
        print(f"baseline json.loads: {base_s:.3f} s", flush=True)

        parse_s, parse_runs, rows = timed(lambda: parse_all(files), args.repeats)
        assert len(rows) == lines, (len(rows), lines)
        rss["after_parsing"] = peak_rss_mb()
        print(f"parsing: {parse_s:.3f} s", flush=True)

        frame = raw_frame(rows)
        validate_partition(frame.head(200), DAY)  # warm-up: GX context and expectation classes
        validate_s, validate_runs, outcome = timed(lambda: validate_partition(frame, DAY), 2)  # noqa: F821 (del below)
        rss["after_validation"] = peak_rss_mb()
        print(f"validation: {validate_s:.3f} s", flush=True)
        del rows, frame

        job = run_job(root)
        rss["after_ingestion_job"] = peak_rss_mb()
        print(f"ingestion_job: {job['seconds']:.3f} s (success={job['success']})", flush=True)

    results = {
        "benchmark": "layer1",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "dagster": dagster.__version__,
            "pandas": pd.__version__,
        },
        "input": {
            "day": DAY.isoformat(),
            "per_day": args.per_day,
            "faults": args.faults,
            "messages": day_volume(args.per_day, DAY),
            "rows": lines,  # landing lines: messages + re-delivered duplicates
            "bytes": sum(len(d) for d in files.values()),
            "files": len(files),
            "faults_injected": ledger.faults,
            "simulate_seconds": round(simulate_seconds, 3),
        },
        "baseline": {
            "what": "plain json.loads loop over the same lines, same process",
            "seconds": round(base_s, 4),
            "runs": base_runs,
            "rows_per_s": rate(lines, base_s),
            "parsed_objects": parsed_ok,
        },
        "parsing": {
            "what": "ai_assets.ingestion.parsing.parse_lines over every landing file (bytes in memory)",
            "seconds": round(parse_s, 4),
            "runs": parse_runs,
            "rows_per_s": rate(lines, parse_s),
            "ratio_to_baseline": round(parse_s / base_s, 2),
        },
        "validation": {
            "what": "ai_assets.ingestion.validation.validate_partition over the raw rows (after a warm-up)",
            "seconds": round(validate_s, 4),
            "runs": validate_runs,
            "rows_per_s": rate(lines, validate_s),
            "ratio_to_baseline": round(validate_s / base_s, 2),
            "validated": len(outcome.validated),
            "quarantined": len(outcome.quarantined),
            "duplicates": outcome.duplicates,
        },
        "ingestion_job": {
            "what": "ingestion_job.execute_in_process for one partition, temporary instance, "
                    "Parquet IO manager, all partition checks",
            "seconds": round(job["seconds"], 3),
            "rows_per_s": rate(lines, job["seconds"]),
            "ratio_to_baseline": round(job["seconds"] / base_s, 2),
            "success": job["success"],
            "counts": job["counts"],
            "step_seconds": job["step_seconds"],
            "checks_passed": job["checks"],
        },
        "peak_rss_mb": rss,
        "notes": "Times are best-of-runs wall clock; rows are landing lines. Peak RSS is the "
                 "process high-water mark (cumulative), read after each stage. No assertions "
                 "on time are made anywhere.",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    print(json.dumps(results, indent=2))
    print(f"\nlayer 1 on {lines:,} rows: parsing {results['parsing']['rows_per_s']:,.0f} rows/s, "
          f"validation {results['validation']['rows_per_s']:,.0f} rows/s, ingestion_job "
          f"{results['ingestion_job']['rows_per_s']:,.0f} rows/s (baseline json.loads "
          f"{results['baseline']['rows_per_s']:,.0f} rows/s); peak RSS {rss['after_ingestion_job']} MB; "
          f"written to {args.output}")
    return 0 if job["success"] else 1


if __name__ == "__main__":
    sys.exit(main())
