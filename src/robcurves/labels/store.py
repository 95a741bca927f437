"""Labels in SQLite: one row per annotator and image, safe under concurrent writers.

The database runs in WAL mode (readers never block the writer) with ``synchronous=FULL`` (a
label acknowledged to the browser survives a crash or a power cut) and a 30 s busy timeout;
each thread uses its own connection. Table ``labels``: ``annotator`` (text, stored literally),
``image`` (image id of the session), ``answer`` (class index, or -1 for "cannot tell"),
``response_ms`` (from the image being shown to the answer, measured in the browser),
``created`` (UTC ISO-8601 time the server stored it); ``UNIQUE(annotator, image)``: a repeated
answer (a retried request) is not stored twice, the first one stands. Table ``meta`` holds the
session id the database belongs to and the key that signs the annotator cookie.
"""

from __future__ import annotations

import csv
import secrets
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["LabelStore", "read_labels", "COLUMNS"]

COLUMNS = ("annotator", "image", "answer", "response_ms", "created")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY,
    annotator TEXT NOT NULL,
    image TEXT NOT NULL,
    answer INTEGER NOT NULL,
    response_ms INTEGER NOT NULL,
    created TEXT NOT NULL,
    UNIQUE (annotator, image)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class LabelStore:
    """The label database at ``path`` (created if missing), bound to the session ``session_id``
    (a database of another session is refused: its image ids would mean other images)."""

    def __init__(self, path: str | Path, session_id: str | None = None) -> None:
        self.path = Path(path)
        self._local = threading.local()
        con = self._con()
        con.executescript(_SCHEMA)
        with con:
            if session_id is not None:
                con.execute("INSERT OR IGNORE INTO meta VALUES ('session', ?)", (session_id,))
            con.execute("INSERT OR IGNORE INTO meta VALUES ('secret', ?)",
                        (secrets.token_hex(32),))
        found = self.meta("session")
        if session_id is not None and found != session_id:
            raise ValueError(f"label database {self.path} belongs to session {found!r}, not "
                             f"{session_id!r}; use another --db for this session")

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                  check_same_thread=True)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            self._local.con = con
        return con

    def meta(self, key: str) -> str | None:
        row = self._con().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def journal_mode(self) -> str:
        return self._con().execute("PRAGMA journal_mode").fetchone()[0]

    def add(self, annotator: str, image: str, answer: int, response_ms: int) -> bool:
        """Store one label; False (and nothing stored) when this annotator already labelled
        this image."""
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        with self._con() as con:
            cur = con.execute("INSERT INTO labels (annotator, image, answer, response_ms, "
                              "created) VALUES (?, ?, ?, ?, ?) ON CONFLICT (annotator, image) "
                              "DO NOTHING", (annotator, image, int(answer), int(response_ms),
                                             now))
        return cur.rowcount == 1

    def labelled(self, annotator: str) -> set[str]:
        """Image ids this annotator has labelled."""
        rows = self._con().execute("SELECT image FROM labels WHERE annotator = ?", (annotator,))
        return {r[0] for r in rows}

    def rows(self) -> list[dict]:
        """Every label, in the order stored."""
        cur = self._con().execute(f"SELECT {', '.join(COLUMNS)} FROM labels ORDER BY id")
        return [dict(zip(COLUMNS, r, strict=True)) for r in cur]

    def export_csv(self, out: str | Path) -> int:
        """Write every label to a CSV file (header :data:`COLUMNS`); returns the row count."""
        rows = self.rows()
        with open(out, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(rows)
        return len(rows)

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


def read_labels(path: str | Path) -> list[dict]:
    """Labels from a label database (``.sqlite``/``.db``) or an exported CSV file, as dicts
    with :data:`COLUMNS` (``answer`` and ``response_ms`` as ints)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no label file {path}")
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        if rows and set(rows[0]) != set(COLUMNS):
            raise ValueError(f"{path} has columns {sorted(rows[0])}; expected {list(COLUMNS)}")
        return [{**r, "answer": int(r["answer"]), "response_ms": int(r["response_ms"])}
                for r in rows]
    with open(path, "rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise ValueError(f"{path} is neither a CSV file (.csv) nor a SQLite database")
    store = LabelStore(path)
    try:
        return store.rows()
    finally:
        store.close()
