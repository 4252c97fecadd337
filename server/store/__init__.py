"""Persistence: SQLAlchemy 2 async models, queries and Alembic migrations over SQLite or PostgreSQL."""
