"""Alert rules, plain Python: what an alert is, when a person hears about it, and what they read.

A person should hear about a condition once: when it starts, again only if it gets worse
(a higher severity, or its figure worse than when they were last told, by a margin) or
after a cooldown, and once more when it clears. A broken day must not send a hundred
messages. This module holds the vocabulary and the pure rules; `ai_assets.ops_db.alerts`
records the state (one row per condition and window, under a unique constraint, so
concurrent sensor ticks agree) and `ai_assets.monitoring.notify` delivers.

Condition keys (`source`, `condition`, `window`), one alert per key:

| source | condition | window | built by |
|---|---|---|---|
| `asset_check` | `<asset>:<check>` | the partition, else the UTC day | `asset_check_alert` |
| `run_failure` | `<job>` | the partition, else the UTC day | `run_failure_alert` |
| `review_overdue` | `review_item:<id>` | `<id>` | `ai_assets.review.escalation.review_overdue_alert` |

Budget crossings, dead letters, drift, accuracy drops and freshness have no source of their own:
they arrive as failed asset checks (`cost_report:within_llm_budget`,
`outbox_deliveries:no_dead_letters`, `input_drift:input_drift_vs_training`,
`model_quality:accuracy_within_margin_of_validation`, `raw_messages:freshness_check`, ...).

Text in alerts is untrusted: a check description may quote a customer's message or a model's
output. Every renderer here strips control characters (no CR/LF reaches an e-mail header or a
log line), caps lengths, and the Slack rendering escapes `&`, `<`, `>` (so `<!channel>` or
`<@U123>` cannot mention anyone) and defuses bare `@here`/`@channel`/`@everyone`.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum, StrEnum
from typing import Any, Literal

# Column widths of the `alerts` table (ai_assets/ops_db/tables.py): keys are checked against
# them here, so a long asset name fails loudly at the call site instead of in the database.
MAX_SOURCE_CHARS = 32
MAX_CONDITION_CHARS = 200
MAX_WINDOW_CHARS = 64
MAX_SUMMARY_CHARS = 500  # what is stored and shown of a summary
MAX_SUBJECT_CHARS = 200  # e-mail subjects (RFC 5322 allows 998; a subject is read in a list)
MAX_LOG_CHARS = 1000
MAX_SLACK_TEXT_CHARS = 3000  # Slack's limit on a section block's text
MAX_LINK_CHARS = 1000

DEFAULT_COOLDOWN = timedelta(hours=24)  # AI_ASSETS_ALERT_COOLDOWN_H
# How much worse a figure must be than when a person was last told, as a share of its distance
# from the threshold then (or of its size, without a threshold): 0.5 = the excess grew by half.
DEFAULT_MARGIN = 0.5


class Severity(IntEnum):
    """Ordered: INFO < WARNING < ERROR < CRITICAL. Stored and shown by its lower-case name."""

    INFO = 10
    WARNING = 20
    ERROR = 30
    CRITICAL = 40

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str | Severity) -> Severity:
        """`warning`, `WARN` (Dagster's AssetCheckSeverity), `error`, ... -> Severity."""
        if isinstance(value, Severity):
            return value
        name = str(value).strip().upper()
        name = {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(name, name)
        try:
            return cls[name]
        except KeyError:
            raise ValueError(f"unknown severity {value!r}: one of info, warning, error, critical") from None


class Source(StrEnum):
    """Where an alert comes from: the first part of its key."""

    ASSET_CHECK = "asset_check"
    RUN_FAILURE = "run_failure"
    REVIEW_OVERDUE = "review_overdue"  # a review item past its due time (ai_assets.review.escalation)


class AlertStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class NoticeKind(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


# --- keys and links --------------------------------------------------------------------------

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_.:/@+=-]")


def key_part(value: object, limit: int = MAX_CONDITION_CHARS) -> str:
    """One part of a condition key: printable, no spaces, bounded. Keys come from code (asset,
    check and job names), so this only keeps a stray character from making two spellings of one key."""
    text = _KEY_UNSAFE.sub("_", str(value).strip())
    if not text:
        raise ValueError("an alert key part must not be empty")
    if len(text) > limit:
        raise ValueError(f"alert key part longer than {limit} characters: {text[:40]}...")
    return text


def day_window(now: datetime) -> str:
    """The UTC day of `now`, the window of alerts that have no partition."""
    return _utc(now).date().isoformat()


def asset_path(asset_key: str | list[str] | tuple[str, ...], partition: str | None = None) -> str:
    """The UI path of an asset (and partition): `/assets/<a>/<b>?partition=<p>`."""
    parts = [asset_key] if isinstance(asset_key, str) else list(asset_key)
    path = "/assets/" + "/".join(urllib.parse.quote(str(p), safe="") for p in parts)
    if partition:
        path += "?" + urllib.parse.urlencode({"partition": partition})
    return path


def run_path(run_id: str) -> str:
    """The UI path of a run: `/runs/<run_id>`."""
    return "/runs/" + urllib.parse.quote(str(run_id), safe="")


def link_url(ui_url: str, link: str | None) -> str | None:
    """The full URL of an alert's link: `ui_url` + path, a full http(s) URL as it is. Anything else
    (a `javascript:` URL, a path without a leading slash) is dropped, not rendered."""
    if not link:
        return None
    link = clean_text(link, MAX_LINK_CHARS).replace(" ", "%20")
    if link.startswith("/") and not link.startswith("//"):
        return ui_url.rstrip("/") + link
    if link.lower().startswith(("http://", "https://")):
        return link
    return None


# --- the alert -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """A condition that crossed a threshold, as a sensor saw it.

    `figure` and `threshold` are the number that crossed and the line it crossed (None when the
    condition is a plain yes/no, such as a failed run); `higher_is_worse` says which way is worse
    (accuracy: lower is worse). `link` is a UI path (`asset_path`, `run_path`) or a full URL.
    """

    source: str
    condition: str
    window: str
    severity: Severity
    summary: str
    figure: float | None = None
    threshold: float | None = None
    higher_is_worse: bool = True
    partition: str | None = None
    link: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", key_part(self.source, MAX_SOURCE_CHARS))
        object.__setattr__(self, "condition", key_part(self.condition, MAX_CONDITION_CHARS))
        object.__setattr__(self, "window", key_part(self.window, MAX_WINDOW_CHARS))
        object.__setattr__(self, "severity", Severity.parse(self.severity))
        object.__setattr__(self, "summary", clean_text(self.summary, MAX_SUMMARY_CHARS))
        for name in ("figure", "threshold"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, bool) or not math.isfinite(float(value)):
                    raise ValueError(f"alert {name} must be a finite number or None, got {value!r}")
                object.__setattr__(self, name, float(value))
        if self.partition is not None:
            object.__setattr__(self, "partition", clean_text(self.partition, MAX_WINDOW_CHARS))
        if self.link is not None:
            object.__setattr__(self, "link", clean_text(self.link, MAX_LINK_CHARS) or None)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.source, self.condition, self.window


def asset_check_alert(asset: str, check: str, *, severity: Severity | str, description: str,
                      partition: str | None, now: datetime, figure: float | None = None,
                      threshold: float | None = None, higher_is_worse: bool = True,
                      run_id: str | None = None) -> Alert:
    """A failed asset check, of any severity (Dagster's WARN maps to warning, ERROR to error).
    A failed check does not fail its run, so this is the only way a person hears of it."""
    return Alert(Source.ASSET_CHECK, f"{key_part(asset)}:{key_part(check)}", partition or day_window(now),
                 Severity.parse(severity), f"check {check} on {asset} failed: {description}", figure,
                 threshold, higher_is_worse, partition, run_path(run_id) if run_id else asset_path(asset, partition))


def run_failure_alert(job: str, run_id: str, *, message: str, partition: str | None, now: datetime,
                      severity: Severity | str = Severity.ERROR) -> Alert:
    """A failed run of `job`: one alert per job and partition (a retried run failing again is the
    same condition), linked to the failed run."""
    return Alert(Source.RUN_FAILURE, key_part(job), partition or day_window(now), Severity.parse(severity),
                 f"run of {job} failed: {message}", None, None, True, partition, run_path(run_id))


# --- state and the rules ---------------------------------------------------------------------


@dataclass(frozen=True)
class AlertState:
    """What the operations database knows of one condition and window (see AlertStore).

    `sent_*` describe the last firing notice somebody received in the current episode (None:
    nobody has been told yet). `pending` is a notice decided but not delivered to every channel;
    `retry_at` is when it may be tried again (a sender holds it until then, or it failed and waits).
    """

    status: AlertStatus
    severity: Severity
    figure: float | None
    sent_severity: Severity | None = None
    sent_figure: float | None = None
    last_sent_at: datetime | None = None
    pending: NoticeKind | None = None
    retry_at: datetime | None = None


Action = Literal["send", "suppress"]


@dataclass(frozen=True)
class Verdict:
    """`action` and why: new, reopened, unsent, worse_severity, worse_figure, cooldown (send);
    in_flight, unchanged, not_open, never_told (suppress)."""

    action: Action
    reason: str

    @property
    def send(self) -> bool:
        return self.action == "send"


def figure_worse(sent: float | None, now: float | None, threshold: float | None, higher_is_worse: bool,
                 margin: float = DEFAULT_MARGIN) -> bool:
    """True when `now` is worse than `sent` by more than `margin` of how far `sent` was past the
    threshold (of |sent| without a threshold). Relative to the excess, not to the figure, so an
    accuracy of 0.80 against 0.85 repeats at 0.775, and 100 dead letters do not repeat at 101."""
    if now is None or sent is None:
        return False
    step = (now - sent) if higher_is_worse else (sent - now)
    if step <= 0:
        return False
    scale = abs(sent - threshold) if threshold is not None else abs(sent)
    return step > margin * scale if scale > 0 else True


def decide(previous: AlertState | None, alert: Alert, now: datetime, cooldown: timedelta = DEFAULT_COOLDOWN,
           margin: float = DEFAULT_MARGIN) -> Verdict:
    """Whether raising `alert` now sends a notice. In order:

    1. nothing recorded -> send (new); recorded but resolved -> send (reopened);
    2. a higher severity than last sent -> send; the figure worse by the margin -> send;
    3. a notice still owed (delivery failed) -> send once its retry time has come (unsent),
       else suppress (in_flight: another tick holds it, or it waits to retry);
    4. nobody told yet and nothing owed -> send (unsent); cooldown over since the last notice -> send;
    5. otherwise suppress (unchanged).
    """
    now = _utc(now)
    if previous is None:
        return Verdict("send", "new")
    if previous.status == AlertStatus.RESOLVED:
        return Verdict("send", "reopened")
    if previous.sent_severity is not None and alert.severity > previous.sent_severity:
        return Verdict("send", "worse_severity")
    if previous.sent_severity is not None and figure_worse(previous.sent_figure, alert.figure, alert.threshold,
                                                           alert.higher_is_worse, margin):
        return Verdict("send", "worse_figure")
    if previous.pending is not None:
        if previous.retry_at is not None and previous.retry_at > now:
            return Verdict("suppress", "in_flight")
        return Verdict("send", "unsent")
    if previous.last_sent_at is None:
        return Verdict("send", "unsent")
    if now - previous.last_sent_at >= cooldown:
        return Verdict("send", "cooldown")
    return Verdict("suppress", "unchanged")


def decide_resolved(previous: AlertState | None) -> Verdict:
    """Whether clearing a condition sends a "resolved" notice: only if it is open and somebody was
    told it fired (a firing notice that never got out is dropped instead: nothing to take back)."""
    if previous is None or previous.status != AlertStatus.OPEN:
        return Verdict("suppress", "not_open")
    if previous.last_sent_at is None:
        return Verdict("suppress", "never_told")
    return Verdict("send", "resolved")


# --- rendering -------------------------------------------------------------------------------

# C0/C1 controls, DEL, and the Unicode line and paragraph separators: anything that ends a line
# or a header somewhere, or hides text in a terminal.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_SLACK_BROADCAST = re.compile(r"@(here|channel|everyone)\b", re.IGNORECASE)


def clean_text(value: object, limit: int) -> str:
    """One line of at most `limit` characters: controls (CR, LF, tabs, bidi overrides...) become
    spaces, runs of spaces one, and an over-long text ends in an ellipsis."""
    text = " ".join(_CONTROL.sub(" ", str(value)).split())
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def slack_escape(text: str) -> str:
    """Slack's three control characters escaped (`<!channel>`, `<@U1>`, `<url|label>` become plain
    text) and bare broadcasts defused with a word joiner (`@\u2060here`)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SLACK_BROADCAST.sub(lambda m: "@\u2060" + m.group(1), text)


@dataclass(frozen=True)
class Notice:
    """One message to people about one alert: it fired (again) or it cleared. `key` identifies the
    notice (alert id and sequence), sent as Idempotency-Key / Message-ID, so a retried send is
    recognisably the same message. `reason` is the Verdict's."""

    kind: NoticeKind
    alert: Alert
    reason: str
    key: str
    at: datetime
    opened_at: datetime | None = None
    raised_count: int = 1

    @property
    def resolved(self) -> bool:
        return self.kind == NoticeKind.RESOLVED


_REASON_WORDS = {"new": "", "reopened": "again", "unsent": "", "worse_severity": "worse",
                 "worse_figure": "worse", "cooldown": "still", "resolved": ""}


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"


def headline(notice: Notice) -> str:
    """`[ERROR] asset_check validated_messages:no_nulls 2025-03-03` / `[RESOLVED] ...`, one line."""
    a = notice.alert
    tag = "RESOLVED" if notice.resolved else a.severity.name
    word = _REASON_WORDS.get(notice.reason, "")
    return clean_text(f"[{tag}]{' ' + word if word else ''} {a.source} {a.condition} {a.window}", MAX_SUBJECT_CHARS)


def _figure_text(a: Alert) -> str | None:
    if a.figure is None:
        return None
    if a.threshold is None:
        return _fmt(a.figure)
    return f"{_fmt(a.figure)} (threshold {_fmt(a.threshold)}, {'higher' if a.higher_is_worse else 'lower'}" \
           " is worse)"


def log_line(notice: Notice, ui_url: str) -> str:
    """The log line of a notice: one line (untrusted text cannot forge a second log record), bounded,
    with the key fields as `name=value` so a log search finds every notice of one condition."""
    a = notice.alert
    parts = [headline(notice), f"severity={a.severity.label}", f"reason={notice.reason}"]
    if a.figure is not None:
        parts.append(f"figure={_fmt(a.figure)}")
    if a.threshold is not None:
        parts.append(f"threshold={_fmt(a.threshold)}")
    if a.partition:
        parts.append(f"partition={a.partition}")
    url = link_url(ui_url, a.link)
    if url:
        parts.append(f"link={url}")
    parts.append(f"key={notice.key}")
    parts.append(f"summary={a.summary!r}")
    return clean_text(" ".join(parts), MAX_LOG_CHARS)


def _lines(notice: Notice, ui_url: str) -> list[tuple[str, str]]:
    a = notice.alert
    rows = [("status", "resolved" if notice.resolved else f"firing ({notice.reason})"),
            ("severity", a.severity.label), ("source", a.source), ("condition", a.condition), ("window", a.window)]
    figure = _figure_text(a)
    if figure:
        rows.append(("figure", figure))
    if a.partition:
        rows.append(("partition", a.partition))
    if notice.opened_at is not None:
        rows.append(("open since", notice.opened_at.isoformat(timespec="seconds")))
    if notice.raised_count > 1:
        rows.append(("seen", f"{notice.raised_count} times"))
    url = link_url(ui_url, a.link)
    if url:
        rows.append(("link", url))
    return rows


def slack_body(notice: Notice, ui_url: str) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook body: `text` (what every receiver shows) and `blocks`,
    where the untrusted summary is a `plain_text` object (Slack never parses it for mentions).
    Every text is escaped all the same: other "Slack-compatible" receivers may parse it anyway."""
    a = notice.alert
    head = headline(notice)
    summary = "cleared: " + a.summary if notice.resolved else a.summary
    details = "\n".join(f"{name}: {value}" for name, value in _lines(notice, ui_url))
    text = slack_escape(f"{head}\n{summary}\n{details}")[:MAX_SLACK_TEXT_CHARS]
    url = link_url(ui_url, a.link)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": slack_escape(head)[:150], "emoji": False}},
        {"type": "section", "text": {"type": "plain_text", "text": slack_escape(summary)[:MAX_SLACK_TEXT_CHARS] or "-",
                                     "emoji": False}},
        {"type": "section", "text": {"type": "mrkdwn", "text": slack_escape(details)[:MAX_SLACK_TEXT_CHARS],
                                     "verbatim": True}},
    ]
    if url:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open in Dagster"}, "url": url}]})
    return {"text": text, "blocks": blocks, "unfurl_links": False, "unfurl_media": False}


def email_message(notice: Notice, ui_url: str) -> tuple[str, str]:
    """(subject, plain-text body). The subject is one line of at most MAX_SUBJECT_CHARS (no CR/LF
    can reach the header); the body's untrusted summary is one cleaned line too."""
    a = notice.alert
    subject = clean_text(f"{headline(notice)}: {a.summary}", MAX_SUBJECT_CHARS)
    lines = ["This condition has cleared." if notice.resolved else "An alert from ai_assets needs a look.", "",
             clean_text(a.summary, MAX_SUMMARY_CHARS), ""]
    lines += [f"{name}: {value}" for name, value in _lines(notice, ui_url)]
    lines += ["", "You get one message when a condition starts, again only if it gets worse or after the "
              "cooldown, and one when it clears. `ai-assets alerts --open` lists what is open."]
    return subject, "\n".join(lines) + "\n"


def _utc(value: datetime) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("alert times must be timezone-aware datetimes (UTC)")
    return value.astimezone(UTC)


__all__ = ["Action", "Alert", "AlertState", "AlertStatus", "DEFAULT_COOLDOWN", "DEFAULT_MARGIN",
           "MAX_CONDITION_CHARS", "MAX_SOURCE_CHARS", "MAX_SUMMARY_CHARS", "MAX_WINDOW_CHARS", "Notice", "NoticeKind",
           "Severity", "Source", "Verdict", "asset_check_alert", "asset_path", "clean_text", "day_window", "decide",
           "decide_resolved", "email_message", "figure_worse", "headline", "key_part", "link_url", "log_line",
           "run_failure_alert", "run_path", "slack_body", "slack_escape"]
