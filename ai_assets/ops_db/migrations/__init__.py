"""Alembic environment of the operations database (configured by ai_assets.ops_db.migrate)."""
