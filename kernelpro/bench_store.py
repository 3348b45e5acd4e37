"""The bench store: one SQLite file per bench, one row per task, written as each task ends.

Local workers and Ray tasks both report to the driver, which writes here; a killed bench keeps
every finished task and `--resume` runs only the rest. Each task's own run directory (its run
store, best.py, tree) sits under `runs/` beside this file.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kernelpro.store import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    key TEXT PRIMARY KEY,            -- level1/19_ReLU
    level INTEGER, problem_id INTEGER, name TEXT NOT NULL, path TEXT NOT NULL, sha TEXT,
    category TEXT NOT NULL,
    status TEXT NOT NULL,            -- done | error | timeout | interrupted
    reason TEXT, budget INTEGER, evaluated INTEGER, correct INTEGER NOT NULL DEFAULT 0,
    best_node INTEGER, speedup_eager REAL, speedup_compile REAL, runtime_ms REAL,
    eager_ms REAL, compile_ms REAL, dry_run INTEGER, gpu TEXT, torch TEXT, tolerance REAL,
    protocol TEXT, worker TEXT, run_dir TEXT, wall_s REAL, updated REAL NOT NULL
);
"""


class BenchStore(SqliteStore):
    schema = SCHEMA

    def __init__(self, path: Path) -> None:
        super().__init__(path, check_same_thread=False)  # written by the driver thread only

    def record(self, **fields: Any) -> None:
        """Insert or replace one task's row (called by the driver only, one thread)."""
        fields["updated"] = time.time()
        cols = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        self.db.execute(f"INSERT OR REPLACE INTO tasks ({cols}) VALUES ({marks})",
                        tuple(fields.values()))
        self.db.commit()

    def rows(self) -> list[dict[str, Any]]:
        cur = self.db.execute("SELECT * FROM tasks ORDER BY level, problem_id, name")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
