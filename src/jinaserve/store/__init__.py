"""State that must survive a restart (batch jobs, trained classifiers).

Embedded by default: one SQLite database (WAL) plus files in a data directory (`--data-dir`), nothing to
install. Each component (jobs, classifiers) owns its tables and declares them as migrations on the shared
`Database`; components expose their own small store interface above it, so a server-grade database can
replace SQLite behind that interface later.
"""

from .db import Database, default_data_dir, open_database

__all__ = ["Database", "default_data_dir", "open_database"]
