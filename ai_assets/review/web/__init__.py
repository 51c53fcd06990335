"""The reviewers' web app (Starlette + Jinja2): `create_app(db, settings, secret_key=...)`."""

from ai_assets.review.web.app import create_app

__all__ = ["create_app"]
