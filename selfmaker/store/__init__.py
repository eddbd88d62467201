"""Metadata persistence: SQLAlchemy over SQLite (embedded) or PostgreSQL, migrated by Alembic."""

from .db import Store

__all__ = ["Store"]
