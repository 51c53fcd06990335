"""The one reader of the environment: every setting of the platform, its variable and its default.

Resources (`ai_assets.resources.build_resources`), the operations database's default URL and
the CLI all read through here, so a variable is spelled, parsed and defaulted in one place.
Plain Python, no Dagster. Secrets are not fields of `Settings` (printing the settings can
never show one): `secret(name)` reads one where it is used, and in Dagster the resources keep
them as `EnvVar` references, never in stored run configuration.

| variable | default | what |
|---|---|---|
| AI_ASSETS_DATA_DIR | ./var | root of the landing zone, storage, models, outbox and the SQLite ops database |
| AI_ASSETS_LANDING_DIR / _STORAGE_DIR / _MODELS_DIR / _OUTBOX_DIR | under the data dir | each part |
| AI_ASSETS_OPS_DB_URL | sqlite:///<data dir>/ops.db | the operations database (PostgreSQL in production; secret) |
| AI_ASSETS_MAX_FILE_BYTES | 64 MiB | one landing file larger than this is refused |
| AI_ASSETS_QUARANTINE_CEILING | 0.20 | share of a day's lines quarantined above which the day is stopped |
| ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL | unset | the LLM tiers are on only with a key (secrets) |
| AI_ASSETS_LLM_DAILY_BUDGET_USD / _RUN_BUDGET_USD | 20 / 5 | LLM spend caps |
| AI_ASSETS_ROUTING_POLICY | the shipped routing_policy.yaml | intent -> queue, priority, action |
| AI_ASSETS_SMTP_HOST, _PORT, _USERNAME, _PASSWORD, _STARTTLS | unset, 25, unset, unset, false | e-mail (else files) |
| AI_ASSETS_WEBHOOK_URL, AI_ASSETS_WEBHOOK_SECRET | unset | case events (else files; secrets) |
| AI_ASSETS_OUTBOX_MAX_ATTEMPTS / _BASE_BACKOFF_S / _DEADLINE_S | 8 / 30 / 20 | outbox delivery |
| AI_ASSETS_MODEL_ENCODER, AI_ASSETS_MODEL_ROWS_PER_INTENT | minilm, 0 (all) | intent-model training |
| AI_ASSETS_LLM_MONTHLY_BUDGET_USD | 400 | the month's LLM spend the cost report forecasts against |
| AI_ASSETS_ALERT_WEBHOOK_URL | unset | Slack-compatible JSON webhook for alerts (secret) |
| AI_ASSETS_ALERT_EMAIL_TO, _FROM | unset, ai-assets-alerts@localhost | alert e-mail (over the SMTP settings) |
| AI_ASSETS_ALERT_COOLDOWN_H | 24 | an unchanged alert repeats only after this many hours |
| AI_ASSETS_UI_URL | http://127.0.0.1:3000 | the Dagster UI, for links in alerts and the report |
| AI_ASSETS_DRIFT_BLOCKING | false | drift checks block downstream steps instead of warning |
| AI_ASSETS_ACCURACY_MARGIN | 0.05 | realised accuracy may sit this far below the validation figure |
| AI_ASSETS_ESTIMATE_GAP_MARGIN | 0.05 | largest tolerated gap between estimated and realised accuracy |
| AI_ASSETS_MINUTES_PER_CASE | 6 | agent minutes one automated message saves (business metrics) |
| AI_ASSETS_REVIEW_URL | http://127.0.0.1:8787 | the review app as people reach it (its public URL behind a proxy) |
| AI_ASSETS_REVIEW_SECRET_KEY | unset | signs review-app session cookies (secret; unset: random per process) |
| AI_ASSETS_REVIEW_SESSION_MAX_AGE_S | 28800 | a review-app session expires this long after sign-in |
| AI_ASSETS_REVIEW_SECURE_COOKIES | false | mark the session cookie Secure (set it behind a TLS-terminating proxy) |
| AI_ASSETS_REVIEW_ALLOWED_ORIGINS | unset | further origins forms may come from (comma-separated: the proxy's) |
| AI_ASSETS_RETRAIN_MIN_NEW_LABELS | 200 | reviewed labels not yet trained on that start a retraining |
| AI_ASSETS_SHADOW_DAYS | 7 | recent days of traffic a candidate answers beside production before promotion |
| AI_ASSETS_NEVER_AUTOMATED_MARGIN | 0.05 | how much worse on a never-automated intent a candidate may be |
| DAGSTER_HOME | unset | the Dagster instance the CLI runs against |
| USER / LOGNAME | cli | who the CLI records as actor in the audit trail |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SECRETS = ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "AI_ASSETS_OPS_DB_URL", "AI_ASSETS_SMTP_PASSWORD",
           "AI_ASSETS_WEBHOOK_URL", "AI_ASSETS_WEBHOOK_SECRET", "AI_ASSETS_ALERT_WEBHOOK_URL",
           "AI_ASSETS_REVIEW_SECRET_KEY")
_TRUE = ("1", "true", "yes")


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def secret(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """A secret's value, None when unset or empty. Only the names in `SECRETS` are read here."""
    if name not in SECRETS:
        raise KeyError(f"{name} is not a secret setting: read it through Settings")
    return _env(env).get(name) or None


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    landing_dir: Path
    storage_dir: Path
    models_dir: Path
    outbox_dir: Path
    ops_db_url_is_set: bool  # AI_ASSETS_OPS_DB_URL given (a secret): else the SQLite file below
    sqlite_ops_db_url: str
    max_file_bytes: int | None  # None: the landing zone's own default
    quarantine_ceiling: float
    llm_daily_budget_usd: float
    llm_run_budget_usd: float
    routing_policy_path: str | None  # None: the shipped policy
    smtp_host: str | None
    smtp_port: int
    smtp_username: str | None
    smtp_starttls: bool
    outbox_max_attempts: int
    outbox_base_backoff_s: float
    outbox_deadline_s: float
    model_encoder: str
    model_rows_per_intent: int
    llm_monthly_budget_usd: float
    alert_email_to: str | None
    alert_email_from: str
    alert_cooldown_h: float
    ui_url: str
    drift_blocking: bool
    accuracy_margin: float
    estimate_gap_margin: float
    minutes_per_case: float
    review_url: str
    review_session_max_age_s: int
    review_secure_cookies: bool
    review_allowed_origins: tuple[str, ...]
    retrain_min_new_labels: int
    shadow_days: int
    never_automated_margin: float
    dagster_home: str | None
    actor: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = _env(env)
        data = Path(env.get("AI_ASSETS_DATA_DIR", "var")).absolute()

        def part(variable: str, name: str) -> Path:
            return Path(env.get(variable, data / name)).absolute()

        max_file_bytes = env.get("AI_ASSETS_MAX_FILE_BYTES")
        return cls(
            data_dir=data,
            landing_dir=part("AI_ASSETS_LANDING_DIR", "landing"),
            storage_dir=part("AI_ASSETS_STORAGE_DIR", "storage"),
            models_dir=part("AI_ASSETS_MODELS_DIR", "models"),
            outbox_dir=part("AI_ASSETS_OUTBOX_DIR", "outbox"),
            ops_db_url_is_set=bool(env.get("AI_ASSETS_OPS_DB_URL")),
            sqlite_ops_db_url=f"sqlite:///{data / 'ops.db'}",
            max_file_bytes=int(max_file_bytes) if max_file_bytes else None,
            quarantine_ceiling=float(env.get("AI_ASSETS_QUARANTINE_CEILING", "0.20")),
            llm_daily_budget_usd=float(env.get("AI_ASSETS_LLM_DAILY_BUDGET_USD", "20")),
            llm_run_budget_usd=float(env.get("AI_ASSETS_LLM_RUN_BUDGET_USD", "5")),
            routing_policy_path=env.get("AI_ASSETS_ROUTING_POLICY") or None,
            smtp_host=env.get("AI_ASSETS_SMTP_HOST") or None,
            smtp_port=int(env.get("AI_ASSETS_SMTP_PORT", "25")),
            smtp_username=env.get("AI_ASSETS_SMTP_USERNAME") or None,
            smtp_starttls=env.get("AI_ASSETS_SMTP_STARTTLS", "false").lower() in _TRUE,
            outbox_max_attempts=int(env.get("AI_ASSETS_OUTBOX_MAX_ATTEMPTS", "8")),
            outbox_base_backoff_s=float(env.get("AI_ASSETS_OUTBOX_BASE_BACKOFF_S", "30")),
            outbox_deadline_s=float(env.get("AI_ASSETS_OUTBOX_DEADLINE_S", "20")),
            model_encoder=env.get("AI_ASSETS_MODEL_ENCODER", "minilm"),
            model_rows_per_intent=int(env.get("AI_ASSETS_MODEL_ROWS_PER_INTENT", "0")),
            llm_monthly_budget_usd=float(env.get("AI_ASSETS_LLM_MONTHLY_BUDGET_USD", "400")),
            alert_email_to=env.get("AI_ASSETS_ALERT_EMAIL_TO") or None,
            alert_email_from=env.get("AI_ASSETS_ALERT_EMAIL_FROM") or "ai-assets-alerts@localhost",
            alert_cooldown_h=float(env.get("AI_ASSETS_ALERT_COOLDOWN_H", "24")),
            ui_url=(env.get("AI_ASSETS_UI_URL") or "http://127.0.0.1:3000").rstrip("/"),
            drift_blocking=env.get("AI_ASSETS_DRIFT_BLOCKING", "false").lower() in _TRUE,
            accuracy_margin=float(env.get("AI_ASSETS_ACCURACY_MARGIN", "0.05")),
            estimate_gap_margin=float(env.get("AI_ASSETS_ESTIMATE_GAP_MARGIN", "0.05")),
            minutes_per_case=float(env.get("AI_ASSETS_MINUTES_PER_CASE", "6")),
            review_url=(env.get("AI_ASSETS_REVIEW_URL") or "http://127.0.0.1:8787").rstrip("/"),
            review_session_max_age_s=int(env.get("AI_ASSETS_REVIEW_SESSION_MAX_AGE_S", "28800")),
            review_secure_cookies=env.get("AI_ASSETS_REVIEW_SECURE_COOKIES", "false").lower() in _TRUE,
            review_allowed_origins=tuple(o.strip().rstrip("/") for o in
                                         env.get("AI_ASSETS_REVIEW_ALLOWED_ORIGINS", "").split(",") if o.strip()),
            retrain_min_new_labels=int(env.get("AI_ASSETS_RETRAIN_MIN_NEW_LABELS", "200")),
            shadow_days=int(env.get("AI_ASSETS_SHADOW_DAYS", "7")),
            never_automated_margin=float(env.get("AI_ASSETS_NEVER_AUTOMATED_MARGIN", "0.05")),
            dagster_home=env.get("DAGSTER_HOME") or None,
            actor=env.get("USER") or env.get("LOGNAME") or "cli",
        )


def ops_db_url(env: Mapping[str, str] | None = None) -> str:
    """`AI_ASSETS_OPS_DB_URL`, else the SQLite file `ops.db` in the data dir."""
    return secret("AI_ASSETS_OPS_DB_URL", env) or Settings.from_env(env).sqlite_ops_db_url
