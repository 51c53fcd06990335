"""The `ai-assets` command: simulate, demo, evaluate, status, actions and the model lifecycle."""

from ai_assets.cli.main import main

__all__ = ["main"]
