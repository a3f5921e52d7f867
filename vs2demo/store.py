"""The results store: every finished scoring kept in one SQLite file (stdlib `sqlite3`, WAL), found
again by its key.

A file people may copy and open with any SQLite tool. Schema (version in `PRAGMA user_version`):

    records(
      id            INTEGER PRIMARY KEY,  -- in the order they were kept
      key           TEXT NOT NULL,        -- scoring.record_key: video bytes, prompt, model and
                                          -- revision, backend, quantization, device, dtype, frame
                                          -- budget, every option (see the README)
      video_sha256  TEXT,                 -- SHA-256 of the video file's bytes
      video         TEXT,                 -- the file's name as the user gave it
      prompt        TEXT,
      model         TEXT,
      overall       REAL,                 -- mean of the three expected scores (NULL if incomplete)
      error         TEXT,                 -- NULL when the answer has all three scores
      scored_at     TEXT,                 -- ISO 8601, UTC
      record        TEXT NOT NULL,        -- the whole record as JSON (the CLI's --json line)
      owner         TEXT                  -- the app's session that asked for it; NULL: the operator
                                          -- (the CLI). Never exported: it only says whom to serve
    )

The same key may be kept more than once (unseeded sampling, "score again"); the newest complete
record is the one served: to anyone when the store is shared (one person's app, or an operator who
chose so), else only to the session that asked for it (or the operator). WAL lets the app, the CLI
and a reader share the file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from .errors import UserInputError
from .records_io import record_from_json
from .results import ScoreResult
from .settings import environment

SCHEMA_VERSION = 2  # 2: the owner column
FILE_NAME = "results.sqlite3"

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    video_sha256 TEXT,
    video TEXT,
    prompt TEXT,
    model TEXT,
    overall REAL,
    error TEXT,
    scored_at TEXT,
    record TEXT NOT NULL,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS records_by_key ON records (key, id);
"""


def default_store_path(environ=None) -> Path:
    """Where records are kept unless told: a Space's persistent storage (/data) when it has one,
    else the user's cache folder."""
    env = environment(environ)
    data = Path("/data")
    if env.on_space and data.is_dir() and os.access(data, os.W_OK):
        return data / "vs2demo" / FILE_NAME
    cache = Path(env.cache_home or Path.home() / ".cache")
    return cache / "vs2demo" / FILE_NAME


class ResultStore:
    """One SQLite file; safe to share between the app's threads (one connection behind a lock)."""

    def __init__(self, path):
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: a crash loses no committed record
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise UserInputError(f"The results store {self.path} was written by a newer vs2demo "
                                     f"(schema {version}, this one reads {SCHEMA_VERSION}): update, or use another --store.")
            self._db.executescript(SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(records)")}
            if "owner" not in columns:  # a store of version 1 gains it; its records are the operator's
                self._db.execute("ALTER TABLE records ADD COLUMN owner TEXT")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as exc:
            raise UserInputError(f"Cannot open the results store {self.path}: {exc}. Give another --store "
                                 "(or VS2_STORE), or --no-store.") from exc
        self._lock = threading.Lock()

    def put(self, record: ScoreResult, owner: str | None = None) -> None:
        """Keep a record that has a key (one scored by the model), asked for by `owner` (a session;
        None: the operator)."""
        if record.key is None:
            return
        data = record.to_dict()
        data["stored"] = False
        data.pop("store_error", None)
        with self._lock:
            self._db.execute(
                "INSERT INTO records (key, video_sha256, video, prompt, model, overall, error, scored_at, record, owner) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.key, record.video_sha256, record.video, record.prompt, record.model, record.overall,
                 record.error, record.scored_at, json.dumps(data, ensure_ascii=False), owner))

    def get(self, key: str, owner: str | None = None, shared: bool = True) -> ScoreResult | None:
        """The newest complete record with this key, or None; unless `shared`, only one that
        `owner` asked for (the operator, owner None, is served any)."""
        mine = "" if shared or owner is None else " AND owner = ?"
        with self._lock:
            row = self._db.execute(f"SELECT record FROM records WHERE key = ? AND error IS NULL{mine} "
                                   "ORDER BY id DESC LIMIT 1", (key,) if not mine else (key, owner)).fetchone()
        return None if row is None else record_from_json(row[0], f"The stored record of key {key}")

    def records(self, limit: int | None = None) -> Iterator[ScoreResult]:
        """Every record kept (or the newest `limit`), oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT record FROM (SELECT id, record FROM records ORDER BY id DESC LIMIT ?) "
                                    "ORDER BY id", (-1 if limit is None else limit,)).fetchall()
        for number, (text,) in enumerate(rows, start=1):
            yield record_from_json(text, f"Stored record {number}")

    def size_bytes(self, limit: int | None = None) -> int:
        """The size of the records' JSON (of the newest `limit`)."""
        with self._lock:
            return self._db.execute("SELECT COALESCE(SUM(LENGTH(record)), 0) FROM (SELECT record FROM records "
                                    "ORDER BY id DESC LIMIT ?)", (-1 if limit is None else limit,)).fetchone()[0]

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


OFF = ("off", "none", "no")  # a --store or VS2_STORE that turns the store off


def store_path(path=None, environ=None) -> Path | None:
    """Where the results store is: `path` (a --store), else VS2_STORE, else the default place; None
    when either says off."""
    chosen = str(path if path is not None else environment(environ).store).strip()
    if chosen.lower() in OFF:
        return None
    return Path(chosen).expanduser() if chosen else default_store_path(environ)


def open_store(path=None, enabled: bool = True, environ=None) -> ResultStore | None:
    """The store `store_path` names; None when turned off (`enabled=False`, or VS2_STORE=off)."""
    where = store_path(path, environ) if enabled else None
    return None if where is None else ResultStore(where)
