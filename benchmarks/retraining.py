"""The learning loop's effect: validation and replay accuracy before and after retraining on a
batch of simulated reviewer corrections.

    python -m benchmarks.retraining [--encoder minilm|hashing] [--batch N] [--seed 0] [--out FILE]

1. "before": a candidate trained exactly as `intent_model` trains one with no reviewed labels
   (`train_candidate` on the BANKING77 training split and the out-of-scope material, threshold
   fixed on validation + the CLINC calibration share), with the production encoder (MiniLM)
   unless --encoder says otherwise;
2. the replay pool (1,506 BANKING77 rows never trained or validated on) is cut in two by
   position: the even rows are the traffic reviewers see, the odd rows stay held out;
3. simulated reviewers: every reviewed-half message the model got wrong or did not automate
   (below its threshold, out of scope, a label named in the text) is labelled with its true
   category — what a person deciding the review queue would answer; --batch N keeps the first N;
4. "after": the same training plus those labels, through `reviewed_material` as `intent_model`
   does (texts also in validation, the gate's sets or the held-out half are left out);
5. both are measured on validation and on the held-out replay half (accuracy, automated share,
   automated precision, each with its exact 95% interval), and judged by both promotion gates:
   the validation gate (`gate_failures`, production = "before") and the shadow gate
   (`ai_assets.review.shadow`, the held-out half as labelled shadow traffic).

Results go to stdout and benchmarks/results/retraining.json. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import pandas as pd  # noqa: E402

from ai_assets.actions.routing_policy import load_policy  # noqa: E402
from ai_assets.data.datasets import LabelledText, load_categories, split_banking77  # noqa: E402
from ai_assets.review.shadow import ShadowRules, answer, compare, failures, latency  # noqa: E402
from ai_assets.serving.intent.guarantee import proportion_interval  # noqa: E402
from ai_assets.serving.intent.intent_model import IntentModel  # noqa: E402
from ai_assets.serving.intent.promotion import GateRules, gate_failures  # noqa: E402
from ai_assets.serving.intent.text_encoders import encoder_named  # noqa: E402
from ai_assets.serving.intent.training import (  # noqa: E402
    OutOfScopeMaterial,
    TrainedCandidate,
    held_out_texts,
    out_of_scope_material,
    reviewed_material,
    train_candidate,
)

RESULTS = Path(__file__).resolve().parent / "results" / "retraining.json"


def train(rows: list[LabelledText], validation: list[LabelledText], oos: OutOfScopeMaterial, extra_oos: list[str],
          encoder, seed: int) -> tuple[TrainedCandidate, float]:
    started = time.perf_counter()
    candidate = train_candidate(rows, validation, oos.train + extra_oos, oos.heldout, encoder=encoder, seed=seed,
                                oos_calibration=oos.calibration, oos_reports=oos.reports)
    return candidate, round(time.perf_counter() - started, 1)


def measured(model: IntentModel, rows: list[LabelledText]) -> dict:
    """Accuracy, automated share and automated precision on `rows`, with exact 95% intervals."""
    predictions = model.predict([r.text for r in rows], top_k=1)
    right = [p.intent == r.category for p, r in zip(predictions, rows, strict=True)]
    automated = [p.automated for p in predictions]
    auto_right = sum(a and c for a, c in zip(automated, right, strict=True))
    return {"rows": len(rows), "accuracy": proportion_interval(sum(right), len(rows)),
            "automated_share": proportion_interval(sum(automated), len(rows)),
            "automated_precision": proportion_interval(auto_right, sum(automated))}


def shadow_gate(before: TrainedCandidate, after: TrainedCandidate, heldout: list[LabelledText],
                validation: list[LabelledText]) -> dict:
    """The shadow gate with the held-out replay half as labelled traffic (the validation split
    for the never-automated intents), production being "before"."""
    labels = load_categories()
    traffic = pd.DataFrame({"day": "replay", "message_id": [f"r{i}" for i in range(len(heldout))],
                            "text": [r.text for r in heldout], "served_intent": None, "served_tier": None,
                            "served_automated": None, "served_cost_usd": None,
                            "label": [r.category for r in heldout], "label_source": "resolved_case",
                            "seen_in_training": False})
    texts = [r.text for r in heldout] + [r.text for r in validation]
    n = len(heldout)
    cand, _ = answer(after.model, texts, threshold=min(after.model.threshold, 1.0), labels=labels)
    prod, _ = answer(before.model, texts, threshold=min(before.model.threshold, 1.0), labels=labels)
    seconds = latency({"candidate": after.model, "production": before.model}, texts, sample=512)
    report = compare(traffic, cand[:n], prod[:n], validation_labels=[r.category for r in validation],
                     candidate_validation=cand[n:], production_validation=prod[n:],
                     never_automate=load_policy().never_automate, candidate_version="after",
                     production_version="before", seconds=seconds, timed_texts=min(512, len(texts)))
    return {"failures": failures(report, ShadowRules()), "accuracy": report.accuracy,
            "agreement_with_production": report.agreement["with_production"], "latency": report.latency,
            "never_automated": {i: {k: f[k] for k in ("rows", "candidate_recall", "production_recall")}
                                for i, f in report.never_automated.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="minilm", help="minilm (production) or hashing")
    parser.add_argument("--batch", type=int, default=0, help="corrections kept (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    split = split_banking77()
    oos = out_of_scope_material()
    reviewed_half, heldout_half = split["replay"][0::2], split["replay"][1::2]
    encoder = encoder_named(args.encoder)
    before, before_s = train(split["train"], split["validation"], oos, [], encoder, args.seed)
    print(f"before: trained in {before_s} s, validation accuracy {before.metrics['accuracy']:.4f}", flush=True)

    predictions = before.model.predict([r.text for r in reviewed_half], top_k=1)
    corrections = [(r.text, r.category, p.intent) for r, p in zip(reviewed_half, predictions, strict=True)
                   if p.intent != r.category or not p.automated]
    wrong = sum(model_intent != label for _, label, model_intent in corrections)
    if args.batch > 0:
        corrections = corrections[:args.batch]
    material = reviewed_material(corrections, intents={r.category for r in split["train"]},
                                 held_out_texts=held_out_texts(split["validation"], oos)
                                 + [r.text for r in heldout_half])
    after, after_s = train(split["train"] + material.train, split["validation"], oos, material.out_of_scope,
                           encoder, args.seed)
    print(f"after: {material.rows} reviewed labels, trained in {after_s} s, validation accuracy "
          f"{after.metrics['accuracy']:.4f}", flush=True)

    figures = {}
    for name, candidate in (("before", before), ("after", after)):
        m = candidate.metrics
        figures[name] = {
            "validation": {"accuracy": m["accuracy_interval"], "coverage": m["coverage"],
                           "automated_precision": m["automated_precision"], "macro_f1": m["macro_f1"]},
            "replay_heldout": measured(candidate.model, heldout_half),
            "replay_reviewed_half": measured(candidate.model, reviewed_half),
            "out_of_scope_automated": candidate.metrics["out_of_scope_automated"],
            "threshold": round(candidate.model.threshold, 6), "training_seconds": before_s if name == "before"
            else after_s, "training_fingerprint": candidate.fingerprint,
        }
    results = {
        "benchmark": "retraining",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                        "load_average_1m": round(os.getloadavg()[0], 2)},
        "input": {"encoder": encoder.name, "seed": args.seed, "batch": args.batch or "all",
                  "replay_reviewed_half": len(reviewed_half), "replay_heldout_half": len(heldout_half),
                  "simulated_reviewer": "the true category of every reviewed-half message the model got wrong "
                                        "or did not automate"},
        "corrections": {"reviewed": len(corrections), "model_wrong": wrong, **material.to_metrics()},
        **figures,
        "validation_gate_failures": gate_failures(after.metrics, before.metrics, GateRules()),
        "shadow_gate": shadow_gate(before, after, heldout_half, split["validation"]),
        "note": "replay_reviewed_half is the traffic the corrections came from: 'after' was trained on its "
                "corrected rows, so only replay_heldout measures generalisation",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    for name in ("before", "after"):
        f = figures[name]
        replay = f["replay_heldout"]
        print(f"{name}: validation accuracy {f['validation']['accuracy']['value']:.4f} coverage "
              f"{f['validation']['coverage']:.4f}; held-out replay accuracy {replay['accuracy']['value']:.4f}"
              f" automated {replay['automated_share']['value']:.4f} at "
              f"{replay['automated_precision']['value']:.4f}")
    print(f"gates: validation {results['validation_gate_failures'] or 'pass'}; shadow "
          f"{results['shadow_gate']['failures'] or 'pass'} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
