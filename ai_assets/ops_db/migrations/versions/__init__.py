"""Migration scripts, oldest first by revision id (Alembic ignores this file)."""
