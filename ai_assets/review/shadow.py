"""The shadow test: a candidate intent model answers recent traffic beside production, acting on
nothing, and the promotion gate reads what it found.

Both models answer the same texts in the same process (the recent days' validated messages,
then the validation split): their *local* answers are compared, since promoting a candidate
changes the local model and nothing else (the LLM tiers, rules and policy stay). Found:

  agreement            the candidate's answer against what production served those days
                       (enriched_messages: the whole cascade) and against production's local
                       model answering now;
  accuracy             on the rows with a label (an agent's resolved case, else a reviewer's
                       decision) that the candidate was not trained on: reviewed messages are
                       recent traffic and go into training, so they are left out (counted) —
                       both models are judged on the same unseen rows;
  automated share      at each model's own registry threshold, through the live automation
  and precision        rules (`AutomationPolicy`), precision on the labelled rows;
  cost                 the messages each model would send to the LLM tiers (below its
                       threshold) × production's mean LLM cost per call in those days;
  latency              both models timed on the same texts in one run, in turn, best of three
                       (`latency`): a ratio (absolute times vary by machine; the ratio does not);
  never-automated      recall per intent of the policy's `never_automate` list (fraud, losses),
  intents              on the validation split and the unseen labelled shadow rows.

The gate (`failures`) refuses a candidate that
  - is less accurate than production on the unseen labelled shadow rows by more than
    `tolerance`, *and* significantly so (exact one-sided McNemar test on the rows where only one
    of the two is right, at 1 - `confidence`); judged only on at least `min_labelled` rows:
    fewer say nothing either way;
  - recognises any never-automated intent worse than production by more than
    `never_automated_margin` in recall, even when it is better on the whole, and beyond a
    one-message wobble: the same exact one-sided test on that intent's rows at the laxer
    `never_automated_confidence` (80%: a missed fraud report costs more than a retraining, so
    less evidence refuses; on 12 rows, three more lost than gained refuse, one or two do not).
    Judged per intent with at least `min_intent_rows` rows (validation + shadow: the validation
    split has 12 to 27 rows of each of these intents).
Without a production model there is nothing to compare: the report says so and the gate passes
(the validation gate `candidate_not_worse_than_production` still holds the candidate to its
floors). Without recent traffic the shadow figures are empty and only the never-automated
recall on the validation split is judged.

Pure logic (pandas, numpy, scipy), no Dagster: `ai_assets.defs.model` reads the frames and runs it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from ai_assets.serving.intent.automation import LOCAL_TIER, AutomationPolicy, is_llm_tier, reaches_local_threshold
from ai_assets.serving.intent.guarantee import proportion_interval
from ai_assets.serving.intent.training import text_key

TRAFFIC_COLUMNS = ["day", "message_id", "text", "served_intent", "served_tier", "served_automated",
                   "served_cost_usd", "label", "label_source", "seen_in_training"]
RESOLVED_CASE, REVIEW = "resolved_case", "review"


@dataclass(frozen=True)
class ShadowRules:
    min_labelled: int = 50  # fewer unseen labelled shadow rows: accuracy is not judged
    tolerance: float = 0.0  # how much less accurate than production still passes
    confidence: float = 0.95  # the McNemar test's level: worse must be beyond noise
    never_automated_margin: float = 0.05  # recall drop on a never-automated intent that refuses
    never_automated_confidence: float = 0.80  # ... when beyond noise at this level (one-sided exact)
    min_intent_rows: int = 10  # fewer rows of a never-automated intent: not judged


class Predictor(Protocol):
    def predict(self, texts: Sequence[str], top_k: int = 3) -> Sequence[Any]: ...  # .intent, .confidence


@dataclass(frozen=True)
class Answers:
    """One model's local answers to a list of texts, as the live cascade would treat them."""

    intents: tuple[str, ...]
    confidences: tuple[float, ...]
    automated: tuple[bool, ...]  # may be acted on without a person (AutomationPolicy, local tier)
    escalated: tuple[bool, ...]  # below the threshold: the cascade asks the LLM tiers

    def __len__(self) -> int:
        return len(self.intents)

    def __getitem__(self, part: slice) -> Answers:
        return Answers(self.intents[part], self.confidences[part], self.automated[part], self.escalated[part])


def answer(model: Predictor, texts: Sequence[str], *, threshold: float,
           labels: Iterable[str]) -> tuple[Answers, float]:
    """The model's answers to `texts` at `threshold` (its registry threshold) and the seconds
    they took (the model's predict call alone)."""
    texts = list(texts)
    started = time.perf_counter()
    predictions = list(model.predict(texts, top_k=1)) if texts else []
    seconds = time.perf_counter() - started
    policy = AutomationPolicy(threshold, frozenset(labels))
    intents = tuple(str(p.intent) for p in predictions)
    confidences = tuple(float(p.confidence) for p in predictions)
    automated = tuple(policy.decide(t, i, c, LOCAL_TIER, local_intent=i) is None
                      for t, i, c in zip(texts, intents, confidences, strict=True))
    escalated = tuple(not reaches_local_threshold(c, threshold) for c in confidences)
    return Answers(intents, confidences, automated, escalated), seconds


def latency(models: Mapping[str, Predictor], texts: Sequence[str], *, rounds: int = 3,
            sample: int = 256) -> dict[str, float]:
    """Seconds each model takes to answer the same `sample` texts, the best of `rounds` runs
    taken in turn (model A, model B, A, B, ...): what the models cost, not what else the
    machine was doing at the time. An empty text list times nothing (0.0)."""
    texts = list(texts)[:sample]
    best = {name: float("inf") for name in models}
    for _ in range(rounds if texts else 0):
        for name, model in models.items():
            started = time.perf_counter()
            model.predict(texts, top_k=1)
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: (seconds if texts else 0.0) for name, seconds in best.items()}


# --------------------------------------------------------------------------- the traffic


@dataclass(frozen=True)
class DayFrames:
    """What storage holds for one day: validated messages, and if materialized the enriched rows
    (production's answers) and the resolved cases (agents' final categories)."""

    validated: pd.DataFrame
    enriched: pd.DataFrame | None = None
    resolved: pd.DataFrame | None = None


def _by_message(frame: pd.DataFrame | None, columns: dict[str, str]) -> pd.DataFrame:
    if frame is None or not len(frame) or not set(columns) <= set(frame.columns):
        return pd.DataFrame(columns=["message_id", *columns.values()])
    picked = frame[["message_id", *columns]].drop_duplicates("message_id", keep="last")
    return picked.rename(columns=columns)


def shadow_traffic(days: Mapping[str, DayFrames], review_labels: Mapping[tuple[str, str], str] | None = None,
                   seen_ids: Iterable[str] = (), seen_texts: Iterable[str] = ()) -> pd.DataFrame:
    """One row per validated message of `days` (TRAFFIC_COLUMNS), with production's served
    answer, a label where one exists (a resolved case, else `review_labels[(message_id, text)]`)
    and whether the candidate was trained on the message (`seen_ids` / `seen_texts`: the
    training data's reviewed rows)."""
    review_labels = review_labels or {}
    seen_id_set, seen_text_set = set(seen_ids), {text_key(t) for t in seen_texts}
    parts = []
    for day in sorted(days):
        frames = days[day]
        base = frames.validated[["message_id", "text"]].astype({"message_id": str, "text": str}).reset_index(drop=True)
        served = _by_message(frames.enriched, {"intent": "served_intent", "tier": "served_tier",
                                               "automated": "served_automated", "cost_usd": "served_cost_usd"})
        resolved = _by_message(frames.resolved, {"category": "label"})
        part = base.merge(served, on="message_id", how="left").merge(resolved, on="message_id", how="left")
        part.insert(0, "day", day)
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=TRAFFIC_COLUMNS)
    frame = pd.concat(parts, ignore_index=True)
    frame["label"] = frame["label"].astype(object).where(frame["label"].notna(), None)
    frame["label_source"] = np.where(frame["label"].notna(), RESOLVED_CASE, None)
    reviewed = [review_labels.get((m, t)) for m, t in zip(frame["message_id"], frame["text"], strict=True)]
    use_review = frame["label"].isna() & pd.Series([r is not None for r in reviewed], index=frame.index)
    frame.loc[use_review, "label"] = [r for r, u in zip(reviewed, use_review, strict=True) if u]
    frame.loc[use_review, "label_source"] = REVIEW
    for column in ("label", "label_source"):  # None, not NaN, where there is none
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    frame["seen_in_training"] = [m in seen_id_set or text_key(t) in seen_text_set
                                 for m, t in zip(frame["message_id"], frame["text"], strict=True)]
    return frame[TRAFFIC_COLUMNS]


def limit_traffic(traffic: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    """At most `max_rows` rows: every unseen labelled row first (the ones the gate judges), then
    the rest in a fixed pseudo-random order (sha256 of the message id), original order kept."""
    if max_rows <= 0 or len(traffic) <= max_rows:
        return traffic
    judged = traffic["label"].notna() & ~traffic["seen_in_training"].astype(bool)
    order = sorted(range(len(traffic)), key=lambda i: (not judged.iat[i], hashlib.sha256(
        f"{traffic['day'].iat[i]}/{traffic['message_id'].iat[i]}".encode()).hexdigest()))
    return traffic.iloc[sorted(order[:max_rows])].reset_index(drop=True)


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class ShadowReport:
    candidate: str
    production: str | None
    notes: list[str]  # what could not be measured and why
    traffic: dict[str, Any]
    agreement: dict[str, Any]
    labelled: dict[str, Any]
    accuracy: dict[str, Any]
    automation: dict[str, Any]
    cost: dict[str, Any]
    latency: dict[str, Any]
    never_automated: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _share(mask: np.ndarray) -> float | None:
    return round(float(mask.mean()), 6) if len(mask) else None


def _mcnemar_worse_p(candidate_only: int, production_only: int) -> float:
    """One-sided exact McNemar p-value of "the candidate is less accurate": the chance, were both
    equally accurate, of production being right alone at least this often among the rows
    where exactly one of them is right."""
    from scipy.stats import binom

    n = candidate_only + production_only
    return 1.0 if n == 0 else float(binom.sf(production_only - 1, n, 0.5))


def _correct(answers: Answers, labels: np.ndarray) -> np.ndarray:
    return np.array(answers.intents, dtype=object) == labels


def _automation(answers: Answers, rows: np.ndarray, correct: np.ndarray) -> dict[str, Any]:
    automated = np.array(answers.automated, dtype=bool)
    labelled_automated = automated[rows]
    return {"share": _share(automated), "automated": int(automated.sum()),
            "precision_on_labelled": proportion_interval(int((labelled_automated & correct).sum()),
                                                         int(labelled_automated.sum()))}


def compare(traffic: pd.DataFrame, candidate: Answers, production: Answers | None, *,
            validation_labels: Sequence[str], candidate_validation: Answers,
            production_validation: Answers | None, never_automate: Iterable[str],
            candidate_version: str, production_version: str | None,
            seconds: Mapping[str, float] | None = None, timed_texts: int = 0) -> ShadowReport:
    """The shadow report of `candidate` beside `production` (None: there is none) on `traffic`
    (`shadow_traffic`, answered in its row order) and on the validation split."""
    if len(candidate) != len(traffic) or (production is not None and len(production) != len(traffic)):
        raise ValueError(f"{len(traffic)} traffic rows but {len(candidate)} candidate answers"
                         + (f" and {len(production)} production answers" if production is not None else ""))
    notes = []
    if production is None:
        notes.append("no production model: nothing to compare with; the validation gate decides")
    if not len(traffic):
        notes.append("no recent traffic stored: no shadow figures; never-automated recall on validation only")
    cand_intents = np.array(candidate.intents, dtype=object)
    served = traffic["served_intent"].to_numpy(dtype=object)
    has_served = pd.notna(served) & (served != "needs_human")
    agreement: dict[str, Any] = {
        "with_served": _share(cand_intents[has_served] == served[has_served]), "served_rows": int(has_served.sum()),
        "with_production": _share(cand_intents == np.array(production.intents, dtype=object))
        if production is not None else None,
    }

    labels = traffic["label"].to_numpy(dtype=object)
    seen = traffic["seen_in_training"].to_numpy(dtype=bool)
    rows = pd.notna(labels) & ~seen
    by_source = traffic.loc[rows, "label_source"].value_counts().to_dict()
    labelled = {"judged_rows": int(rows.sum()), "by_source": {k: int(v) for k, v in sorted(by_source.items())},
                "left_out_seen_in_training": int((pd.notna(labels) & seen).sum())}
    cand_right = _correct(candidate, labels)[rows]
    accuracy: dict[str, Any] = {"candidate": proportion_interval(int(cand_right.sum()), int(rows.sum()))}
    automation: dict[str, Any] = {"candidate": _automation(candidate, rows, cand_right),
                                  "served_share": _share(traffic.loc[has_served, "served_automated"]
                                                         .astype(bool).to_numpy())}
    if production is not None:
        prod_right = _correct(production, labels)[rows]
        only_c, only_p = int((cand_right & ~prod_right).sum()), int((prod_right & ~cand_right).sum())
        accuracy.update(production=proportion_interval(int(prod_right.sum()), int(rows.sum())),
                        difference=round(float(cand_right.mean() - prod_right.mean()), 6) if rows.any() else None,
                        candidate_only_right=only_c, production_only_right=only_p,
                        p_value_candidate_worse=round(_mcnemar_worse_p(only_c, only_p), 6))
        automation["production"] = _automation(production, rows, prod_right)

    tiers = traffic["served_tier"].to_numpy(dtype=object)
    llm_rows = np.array([isinstance(t, str) and is_llm_tier(t) for t in tiers], dtype=bool)
    costs = pd.to_numeric(traffic["served_cost_usd"], errors="coerce").to_numpy(dtype=float)
    mean_cost = float(np.nanmean(costs[llm_rows])) if llm_rows.any() else None
    cost: dict[str, Any] = {"candidate_llm_calls": int(sum(candidate.escalated)),
                            "served_llm_rows": int(llm_rows.sum()),
                            "mean_llm_cost_usd": round(mean_cost, 8) if mean_cost is not None else None}
    if production is not None:
        delta = int(sum(candidate.escalated)) - int(sum(production.escalated))
        cost.update(production_llm_calls=int(sum(production.escalated)), llm_calls_difference=delta,
                    cost_difference_usd=round(delta * mean_cost, 6) if mean_cost is not None else None,
                    cost_difference_usd_per_1000=round(1000 * delta * mean_cost / len(traffic), 6)
                    if mean_cost is not None and len(traffic) else None)
    if mean_cost is None:
        notes.append("no LLM answers served in the window: the cost difference is unknown (LLM tiers off?)")
    seconds = dict(seconds or {})
    c_s, p_s = seconds.get("candidate"), seconds.get("production")
    latency = {"texts": timed_texts, "candidate_s": round(c_s, 4) if c_s is not None else None,
               "production_s": round(p_s, 4) if p_s is not None else None,
               "ratio": round(c_s / p_s, 4) if c_s is not None and p_s else None}

    days = sorted(set(traffic["day"]))
    summary = {"days": days, "messages": len(traffic), "first_day": days[0] if days else None,
               "last_day": days[-1] if days else None}
    never = never_automated_recall(
        list(validation_labels), candidate_validation, production_validation,
        shadow_labels=labels[rows], shadow_candidate=candidate.intents, shadow_production=production.intents
        if production is not None else None, shadow_rows=rows, intents=never_automate)
    return ShadowReport(candidate_version, production_version, notes, summary, agreement, labelled, accuracy,
                        automation, cost, latency, never)


def never_automated_recall(validation_labels: Sequence[str], candidate: Answers, production: Answers | None, *,
                           shadow_labels: Sequence[str] = (), shadow_candidate: Sequence[str] = (),
                           shadow_production: Sequence[str] | None = None, shadow_rows: np.ndarray | None = None,
                           intents: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per never-automated intent: its rows on validation and in the judged shadow rows, and
    each model's recall (share of them it answered with that intent)."""
    if shadow_rows is not None:
        shadow_candidate = [a for a, keep in zip(shadow_candidate, shadow_rows, strict=True) if keep]
        if shadow_production is not None:
            shadow_production = [a for a, keep in zip(shadow_production, shadow_rows, strict=True) if keep]
    truth = list(validation_labels) + list(shadow_labels)
    cand = list(candidate.intents) + list(shadow_candidate)
    prod = (list(production.intents) + list(shadow_production or [])) if production is not None else None
    if len(cand) != len(truth) or (prod is not None and len(prod) != len(truth)):
        raise ValueError("never-automated recall: labels and answers differ in length")
    n_val = len(validation_labels)
    out = {}
    for intent in sorted(set(intents)):
        idx = [i for i, label in enumerate(truth) if label == intent]
        c = sum(cand[i] == intent for i in idx)
        figures = {
            "rows": len(idx), "validation_rows": sum(i < n_val for i in idx),
            "shadow_rows": sum(i >= n_val for i in idx),
            "candidate_recall": round(c / len(idx), 6) if idx else None, "candidate_right": c,
            "production_recall": None, "production_right": None,
        }
        if prod is not None:
            p = sum(prod[i] == intent for i in idx)
            only_c = sum(cand[i] == intent != prod[i] for i in idx)
            only_p = sum(prod[i] == intent != cand[i] for i in idx)
            figures.update(production_recall=round(p / len(idx), 6) if idx else None, production_right=p,
                           candidate_only_right=only_c, production_only_right=only_p,
                           p_value_candidate_worse=round(_mcnemar_worse_p(only_c, only_p), 6))
        out[intent] = figures
    return out


# --------------------------------------------------------------------------- the gate


def failures(report: ShadowReport, rules: ShadowRules) -> list[str]:
    """Why the shadow test refuses the candidate; empty when it may replace production."""
    if report.production is None:
        return []
    out = []
    acc = report.accuracy
    n = report.labelled["judged_rows"]
    if n >= rules.min_labelled and acc.get("difference") is not None:
        alpha = 1 - rules.confidence
        if acc["difference"] < -rules.tolerance and acc["p_value_candidate_worse"] < alpha:
            out.append(f"accuracy on {n} labelled shadow rows {acc['candidate']['value']:.4f} is worse than "
                       f"production's {acc['production']['value']:.4f} (McNemar p={acc['p_value_candidate_worse']:.4f} "
                       f"< {alpha:.2f}; only production right on {acc['production_only_right']}, only the "
                       f"candidate on {acc['candidate_only_right']})")
    alpha = 1 - rules.never_automated_confidence
    for intent, figures in report.never_automated.items():
        c, p = figures["candidate_recall"], figures["production_recall"]
        if figures["rows"] >= rules.min_intent_rows and c is not None and p is not None \
                and c < p - rules.never_automated_margin and figures["p_value_candidate_worse"] < alpha:
            out.append(f"never-automated intent {intent}: recall {c:.4f} is worse than production's {p:.4f} "
                       f"by more than {rules.never_automated_margin:.4f} on {figures['rows']} rows (only "
                       f"production right on {figures['production_only_right']}, only the candidate on "
                       f"{figures['candidate_only_right']}; p={figures['p_value_candidate_worse']:.4f} < {alpha:.2f})")
    return out


def not_judged(report: ShadowReport, rules: ShadowRules) -> list[str]:
    """What the gate could not judge and why (shown beside its verdict)."""
    if report.production is None:
        return ["no production model: the validation gate decides"]
    out = []
    n = report.labelled["judged_rows"]
    if n < rules.min_labelled:
        out.append(f"accuracy not judged: {n} labelled shadow rows the candidate was not trained on "
                   f"(at least {rules.min_labelled})")
    small = [f"{i} ({f['rows']})" for i, f in report.never_automated.items() if f["rows"] < rules.min_intent_rows]
    if small:
        out.append(f"never-automated recall not judged for {', '.join(small)}: fewer than "
                   f"{rules.min_intent_rows} rows")
    return out


__all__ = ["RESOLVED_CASE", "REVIEW", "TRAFFIC_COLUMNS", "Answers", "DayFrames", "Predictor", "ShadowReport",
           "ShadowRules", "answer", "compare", "failures", "latency", "limit_traffic", "never_automated_recall",
           "not_judged", "shadow_traffic"]
