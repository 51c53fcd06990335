"""Drift detection: false alarms on clean days, detection of out-of-domain mixes, and runtime.

    python -m benchmarks.drift_detection [--clean-days 100] [--mixed-days 20] [--per-day 500] [--no-outputs]

Reference: 5,000 messages drawn (seeded) from the training + validation splits, with channels
drawn at the simulator's weights. Days: `simulate_day` over the replay pool (the project's daily
traffic, no faults, no PII lines), `--per-day` messages each. A mixed day replaces a share p of a
day's messages (5%, 10%, 20%) with CLINC150 out-of-domain queries (`load_clinc_out_of_scope`).

Outputs: a quick real model (hashing encoder, 12 rows per intent, as ai_assets_tests/conftest.py
trains it: ~60% accurate, so output figures are for a weak model) answers every day; its answers
on the validation split are the output reference (no tier column there: tier mix is only tested
against trailing windows). `--no-outputs` skips the model.

Also: the same clean days against a trailing window of the 7 previous clean days (the second
reference the checks use), per-feature p-values on clean days at candidate family alphas (how the
default was chosen), the novelty quantile sweep, Evidently 0.7's default text rule (domain
classifier ROC AUC > 0.55) on the same days, and the time of one 10,000-message day against the
5,000-message reference. Results: benchmarks/results/drift_detection.json. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from ai_assets.data.datasets import load_clinc_out_of_scope, split_banking77
from ai_assets.monitoring import drift_statistics
from ai_assets.monitoring.drift import DEFAULT_THRESHOLDS, DriftReference, DriftResult, DriftSample, compare
from ai_assets.simulator import CHANNEL_WEIGHTS, simulate_day

RESULTS = Path(__file__).resolve().parent / "results" / "drift_detection.json"
FIRST_MONDAY = date(2025, 3, 3)  # Mondays only: WEEKDAY_FACTOR 1.0, so --per-day messages exactly
MIXES = (0.05, 0.10, 0.20)
CANDIDATE_ALPHAS = (0.001, 0.005, 0.01, 0.05)
NOVELTY_QUANTILES = (0.95, 0.98, 0.99, 0.995)
REFERENCE_SIZE = 5000
TRAILING_DAYS = 7


def simulated_day(index: int, per_day: int, seed: int) -> tuple[list[str], list[str]]:
    """Texts and channels of one simulated day (the landing lines parsed back)."""
    files, _, _ = simulate_day(FIRST_MONDAY + timedelta(weeks=index), split_banking77()["replay"], per_day, {},
                               seed=seed, pii_rate=0.0)
    records = [json.loads(line) for data in files.values() for line in data.splitlines()]
    records.sort(key=lambda r: r["received_at"] + r["message_id"])
    return [r["text"] for r in records], [r["channel"] for r in records]


def mixed(texts: list[str], share: float, out_of_domain: list[str], rng: random.Random) -> list[str]:
    texts = list(texts)
    k = round(share * len(texts))
    for i, text in zip(rng.sample(range(len(texts)), k), rng.sample(out_of_domain, k), strict=True):
        texts[i] = text
    return texts


def train_quick_model():
    from ai_assets.serving.intent.out_of_scope import load_out_of_scope
    from ai_assets.serving.intent.text_encoders import HashingEncoder
    from ai_assets.serving.intent.training import first_per_intent, train_candidate

    split = split_banking77()
    return train_candidate(first_per_intent(split["train"], 12), split["validation"], load_out_of_scope("train"),
                           load_out_of_scope("heldout"), encoder=HashingEncoder()).model


def with_outputs(model, texts: list[str], channels: list[str]) -> DriftSample:
    if model is None:
        return DriftSample(tuple(texts), tuple(channels))
    return DriftSample.from_predictions(texts, model.predict(texts), channels=channels)


def day_record(result: DriftResult) -> dict:
    return {"status": result.status, "features": {f.name: {"p": f.p_value, "effect": f.value, "floor": f.threshold,
                                                           "drifted": f.drifted} for f in result.features}}


def flagged_at(record: dict, family_alpha: float) -> bool:
    features = record["features"]
    alpha = family_alpha / max(1, len(features))
    return any(f["p"] < alpha and f["effect"] >= f["floor"] for f in features.values())


def rate(flags: list[bool]) -> dict:
    share = round(sum(flags) / len(flags), 4) if flags else None
    return {"flagged": int(sum(flags)), "days": len(flags), "rate": share}


def summarise(records: list[dict]) -> dict:
    """Overall and per-feature flag counts at the default thresholds, and overall at candidate alphas."""
    names = sorted({n for r in records for n in r["features"]})
    return {
        "overall": rate([r["status"] == "drift" for r in records]),
        "per_feature": {n: rate([r["features"][n]["drifted"] for r in records if n in r["features"]]) for n in names},
        "overall_at_family_alpha": {str(a): rate([flagged_at(r, a) for r in records]) for a in CANDIDATE_ALPHAS},
    }


def novelty_sweep(reference: DriftReference, days: dict[str, list[list[str]]]) -> dict:
    """Detection of the novelty test alone (at its Bonferroni alpha among 6 input features) per quantile."""
    loo = np.asarray(reference.novelty_loo)
    alpha = DEFAULT_THRESHOLDS.family_alpha / 6
    out = {}
    for q in NOVELTY_QUANTILES:
        cut = float(np.quantile(loo, q))
        k_ref = int((loo > cut).sum())
        row = {}
        for name, texts_of_days in days.items():
            flags = []
            for texts in texts_of_days:
                scores = reference.index.scores(texts)
                t = drift_statistics.proportion_shift(k_ref, len(loo), int((scores > cut).sum()), len(scores),
                                                      alternative="greater")
                flags.append(t.p_value < alpha and t.effect >= DEFAULT_THRESHOLDS.effect_floors["novelty"])
            row[name] = rate(flags)
        out[str(q)] = row
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clean-days", type=int, default=100)
    ap.add_argument("--mixed-days", type=int, default=20)
    ap.add_argument("--per-day", type=int, default=500)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-outputs", action="store_true", help="input features only (no model)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    started = time.perf_counter()
    rng = random.Random(args.seed)
    split = split_banking77()
    pool = split["train"] + split["validation"]
    ref_rows = rng.sample(pool, REFERENCE_SIZE)
    ref_channels = rng.choices(list(CHANNEL_WEIGHTS), weights=list(CHANNEL_WEIGHTS.values()), k=REFERENCE_SIZE)
    out_of_domain = [r.text for r in load_clinc_out_of_scope()]

    model = None if args.no_outputs else train_quick_model()
    output_reference = None
    if model is not None:
        val_texts = [r.text for r in split["validation"]]
        output_reference = DriftSample.from_predictions(val_texts, model.predict(val_texts))
    t0 = time.perf_counter()
    reference = DriftReference.build(DriftSample(tuple(r.text for r in ref_rows), tuple(ref_channels)),
                                     output_reference, seed=args.seed, label="training")
    build_seconds = time.perf_counter() - t0

    def judge(sample: DriftSample, ref: DriftReference) -> dict:
        rec = {"inputs": day_record(compare(ref, sample, kind="inputs", seed=args.seed))}
        if sample.intents is not None and ref.intent_counts is not None:
            rec["outputs"] = day_record(compare(ref, sample, kind="outputs", seed=args.seed))
        return rec

    # Clean days, each against the training reference and against its trailing 7-day window.
    clean_samples, clean, trailing, evidently_clean = [], [], [], []
    for i in range(args.clean_days + TRAILING_DAYS):
        texts, channels = simulated_day(i, args.per_day, args.seed)
        clean_samples.append(with_outputs(model, texts, channels))
    for i in range(TRAILING_DAYS, TRAILING_DAYS + args.clean_days):
        sample = clean_samples[i]
        rec = judge(sample, reference)
        clean.append(rec)
        evidently_clean.append(evidently_rule(rec))
        if i - TRAILING_DAYS < 30:  # the trailing-window figure on the 30 days of the done-when target
            window = DriftReference.build(DriftSample.concat(clean_samples[i - TRAILING_DAYS : i]), seed=args.seed,
                                          label="trailing 7 days")
            trailing.append(judge(sample, window))

    # Mixed days: fresh simulated days (other dates) with a share replaced by out-of-domain queries.
    mixed_results: dict[str, list[dict]] = {}
    evidently_mixed: dict[str, list[bool]] = {}
    mixed_texts: dict[str, list[list[str]]] = {"clean": [s.texts for s in clean_samples[TRAILING_DAYS:]]}
    for share in MIXES:
        name = f"{share:.0%}"
        mixed_results[name], evidently_mixed[name], mixed_texts[name] = [], [], []
        for j in range(args.mixed_days):
            texts, channels = simulated_day(1000 + 100 * int(share * 100) + j, args.per_day, args.seed)
            texts = mixed(texts, share, out_of_domain, rng)
            sample = with_outputs(model, texts, channels)
            mixed_results[name].append(judge(sample, reference))
            evidently_mixed[name].append(evidently_rule(mixed_results[name][-1]))
            mixed_texts[name].append(texts)

    # Runtime: one 10,000-message day (replayed, 5% mixed) against the 5,000-message reference.
    big_texts, big_channels = simulated_day(5000, 10_000, args.seed)
    big = with_outputs(model, mixed(big_texts, 0.05, out_of_domain, rng), big_channels)
    timings = {}
    for kind in ("inputs",) + (("outputs",) if model is not None else ()):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            compare(reference, big, kind=kind, seed=args.seed)
            times.append(time.perf_counter() - t0)
        timings[kind] = {"best_seconds": round(min(times), 3), "all_seconds": [round(t, 3) for t in times]}

    def by_kind(records: list[dict], kind: str) -> list[dict]:
        return [r[kind] for r in records if kind in r]

    kinds = ["inputs"] + (["outputs"] if model is not None else [])
    report = {
        "setup": {"reference_messages": REFERENCE_SIZE, "reference": "training + validation splits, seeded sample",
                  "output_reference": None if model is None else "quick model's answers on validation",
                  "per_day": args.per_day, "clean_days": args.clean_days, "mixed_days_per_share": args.mixed_days,
                  "out_of_domain": "CLINC150 out-of-scope copy (7,400 queries)", "seed": args.seed,
                  "thresholds": {"family_alpha": DEFAULT_THRESHOLDS.family_alpha,
                                 "novelty_quantile": DEFAULT_THRESHOLDS.novelty_quantile,
                                 "effect_floors": dict(DEFAULT_THRESHOLDS.effect_floors)}},
        "clean_first_30_days": {
            "any_false_alarm": rate([any(r[k]["status"] == "drift" for k in kinds) for r in clean[:30]]),
            **{k: summarise(by_kind(clean[:30], k)) for k in kinds}},
        "clean_all_days": {
            "any_false_alarm": rate([any(r[k]["status"] == "drift" for k in kinds) for r in clean]),
            **{k: summarise(by_kind(clean, k)) for k in kinds}},
        "clean_against_trailing_7_days": {
            "any_false_alarm": rate([any(r[k]["status"] == "drift" for k in r) for r in trailing]),
            **{k: summarise(by_kind(trailing, k)) for k in kinds}},
        "detection": {name: {"any": rate([any(r[k]["status"] == "drift" for k in kinds) for r in recs]),
                             **{k: summarise(by_kind(recs, k)) for k in kinds}}
                      for name, recs in mixed_results.items()},
        "evidently_default_text_rule_auc_gt_0_55": {"clean": rate(evidently_clean),
                                                    **{n: rate(v) for n, v in evidently_mixed.items()}},
        "novelty_quantile_sweep": novelty_sweep(reference, mixed_texts),
        "runtime": {"reference_build_seconds": round(build_seconds, 3),
                    "day_messages": len(big), "reference_messages": REFERENCE_SIZE, **timings},
        "machine": {"cpu_count": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
                    "python": platform.python_version()},
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"clean_first_30_days": report["clean_first_30_days"]["any_false_alarm"],
                      "clean_all": report["clean_all_days"]["any_false_alarm"],
                      "trailing": report["clean_against_trailing_7_days"]["any_false_alarm"],
                      "detection": {n: d["any"] for n, d in report["detection"].items()},
                      "evidently": report["evidently_default_text_rule_auc_gt_0_55"],
                      "runtime": report["runtime"]}, indent=1))
    print(f"written to {args.out}")
    return report


def evidently_rule(record: dict) -> bool:
    """Evidently 0.7's default text-drift verdict on the same day: the same kind of domain classifier
    (out-of-fold ROC AUC, recorded as AUC - 0.5) above 0.55."""
    return record["inputs"]["features"]["domain_classifier"]["effect"] + 0.5 > 0.55


if __name__ == "__main__":
    main(sys.argv[1:])
