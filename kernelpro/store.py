"""The run store: one SQLite file per run, written after every evaluated candidate.

It holds the run's config and task, every candidate (source, proposer, knobs, completion,
token logprobs and surprisal), its verdict and diagnosis, the tree edges (each node's parent)
and the token usage, so a killed run loses nothing it evaluated and `--resume` rebuilds the
tree from it. `export_jsonl` writes one JSON object per candidate.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
    id INTEGER PRIMARY KEY,
    parent INTEGER,
    in_tree INTEGER NOT NULL,       -- 0: a correct sibling --select did not time
    proposer TEXT, source TEXT, knobs TEXT, completion TEXT, prompt_hash TEXT,
    tokens TEXT, logprobs TEXT, surprisal REAL, code_surprisal REAL, token_count INTEGER,
    status TEXT NOT NULL, stage TEXT, reason TEXT, correct INTEGER NOT NULL,
    speedup REAL, runtime_ms REAL, energy_j REAL, result TEXT, diagnosis TEXT,
    recommendations TEXT, created REAL NOT NULL
);
"""
JSON_COLUMNS = ("knobs", "tokens", "logprobs", "result", "recommendations")


class SqliteStore:
    """A SQLite file with a JSON `meta` table, committed durably (WAL, synchronous=FULL: a
    kill -9 must not lose a committed row). RunStore and the bench store build on it."""

    schema = ""

    def __init__(self, path: Path, check_same_thread: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, check_same_thread=check_same_thread)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(self.schema)
        self.db.commit()

    def close(self) -> None:
        self.db.close()

    def put(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))
        self.db.commit()

    def get(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default


class RunStore(SqliteStore):
    schema = SCHEMA

    # --- nodes ------------------------------------------------------------------------------

    def add_node(self, **fields: Any) -> None:
        fields.setdefault("created", time.time())
        for col in JSON_COLUMNS:
            if col in fields and fields[col] is not None:
                fields[col] = json.dumps(fields[col])
        cols = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        self.db.execute(f"INSERT INTO nodes ({cols}) VALUES ({marks})", tuple(fields.values()))
        self.db.commit()

    def nodes(self) -> list[dict[str, Any]]:
        cur = self.db.execute("SELECT * FROM nodes ORDER BY id")
        names = [d[0] for d in cur.description]
        out = []
        for row in cur.fetchall():
            rec = dict(zip(names, row, strict=True))
            for col in JSON_COLUMNS:
                if rec[col] is not None:
                    rec[col] = json.loads(rec[col])
            out.append(rec)
        return out

    # --- streaming (a Ray task's store copied into the driver's, row by row) --------------

    def meta_items(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta").fetchall())

    def raw_nodes_after(self, last_id: int) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows (JSON columns still encoded) of nodes with id > last_id."""
        cur = self.db.execute("SELECT * FROM nodes WHERE id > ? ORDER BY id", (last_id,))
        return [d[0] for d in cur.description], cur.fetchall()

    def merge_raw(self, meta: dict[str, str], cols: list[str],
                  rows: list[tuple[Any, ...]]) -> None:
        """Apply what raw_nodes_after/meta_items read elsewhere; rows already here are kept."""
        self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(meta.items()))
        if rows:
            marks = ", ".join("?" for _ in cols)
            self.db.executemany(f"INSERT OR IGNORE INTO nodes ({', '.join(cols)}) "
                                f"VALUES ({marks})", rows)
        self.db.commit()

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM nodes").fetchone()[0])

    def export_jsonl(self, path: Path) -> int:
        rows = self.nodes()
        with Path(path).open("w") as f:
            for rec in rows:
                f.write(json.dumps(rec) + "\n")
        return len(rows)
