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

    labels(                               -- people's own 1-5s, given in the app (vs2demo.labels)
      id, video (metrics.video_key), video_sha256, prompt, visual_quality, text_alignment,
      physical_consistency (INTEGER 1-5 or NULL), who, owner, labelled_at
    )                                     -- one per (video, prompt, who): a new one replaces it
    preferences(id, video_a, video_b, prompt, preference ('a', 'b' or 'tie'), who, owner, labelled_at)
                                          -- one per (pair of videos, prompt, who)

The same key may be kept more than once (unseeded sampling, "score again"); the newest complete
record is the one served: to anyone when the store is shared (one person's app, or an operator who
chose so), else only to the session that asked for it (or the operator). Labels follow the same
rule: when shared, everyone sees (and may replace, by the same name) every label; else a session
sees and replaces only its own. WAL lets the app, the CLI
and a reader share the file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from . import DIMENSIONS
from .errors import UserInputError
from .labels import PersonLabel, Preference
from .records_io import record_from_json
from .results import ScoreResult
from .settings import environment

SCHEMA_VERSION = 3  # 2: the owner column; 3: the labels and preferences tables
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
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY,
    video TEXT NOT NULL,
    video_sha256 TEXT,
    prompt TEXT NOT NULL,
    visual_quality INTEGER,
    text_alignment INTEGER,
    physical_consistency INTEGER,
    who TEXT NOT NULL,
    owner TEXT,
    labelled_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS labels_by_video ON labels (video, prompt, who);
CREATE INDEX IF NOT EXISTS labels_by_owner ON labels (owner);
CREATE TABLE IF NOT EXISTS preferences (
    id INTEGER PRIMARY KEY,
    video_a TEXT NOT NULL,
    video_b TEXT NOT NULL,
    prompt TEXT NOT NULL,
    preference TEXT NOT NULL CHECK (preference IN ('a', 'b', 'tie')),
    who TEXT NOT NULL,
    owner TEXT,
    labelled_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS preferences_by_pair ON preferences (video_a, video_b, prompt, who);
CREATE INDEX IF NOT EXISTS preferences_by_owner ON preferences (owner);
"""
LABEL_FIELDS = ("video", "video_sha256", "prompt", *DIMENSIONS, "who", "labelled_at")
PREFERENCE_FIELDS = ("video_a", "video_b", "prompt", "preference", "who", "labelled_at")


class TooManyLabels(UserInputError):
    """A visitor reached the number of labels one may keep (settings.max_labels)."""


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

    # -- people's labels --

    def put_label(self, label: PersonLabel, owner: str | None = None, shared: bool = True,
                  most: int | None = None) -> None:
        """Keep `label`, replacing the one of the same video, prompt and name (any session's when
        `shared`, else only `owner`'s). A session (owner not None) keeps at most `most` labels and
        preferences together: past that, TooManyLabels; a replacement always goes in."""
        same = ("video = ? AND prompt = ? AND who = ?", (label.video, label.prompt, label.who))
        values = (label.video, label.video_sha256, label.prompt, *(label.scores.get(key) for key in DIMENSIONS),
                  label.who, owner, label.labelled_at)
        self._replace("labels", LABEL_FIELDS, same, values, owner, shared, most)

    def put_preference(self, item: Preference, owner: str | None = None, shared: bool = True,
                       most: int | None = None) -> None:
        """Keep `item`, replacing the one of the same two videos (either way round), prompt and name."""
        same = ("((video_a = ? AND video_b = ?) OR (video_a = ? AND video_b = ?)) AND prompt = ? AND who = ?",
                (item.video_a, item.video_b, item.video_b, item.video_a, item.prompt, item.who))
        values = (item.video_a, item.video_b, item.prompt, item.preference, item.who, owner, item.labelled_at)
        self._replace("preferences", PREFERENCE_FIELDS, same, values, owner, shared, most)

    def _replace(self, table: str, names: tuple, same: tuple[str, tuple], values: tuple, owner: str | None,
                 shared: bool, most: int | None) -> None:
        where, args = same
        if not shared and owner is not None:
            where, args = f"{where} AND owner = ?", (*args, owner)
        columns = (*names[:-1], "owner", names[-1])  # `values` are in this order
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                replaced = self._db.execute(f"DELETE FROM {table} WHERE {where}", args).rowcount
                if owner is not None and most is not None and not replaced and self._kept_by(owner) >= most:
                    raise TooManyLabels(f"This session has kept {most:,} labels, as many as this app keeps for one "
                                        "visitor. Export them, or ask the app's operator for more (--max-labels).")
                self._db.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                                 values)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _kept_by(self, owner: str) -> int:
        return sum(self._db.execute(f"SELECT COUNT(*) FROM {table} WHERE owner = ?", (owner,)).fetchone()[0]
                   for table in ("labels", "preferences"))

    def labels(self, owner: str | None = None, shared: bool = True) -> list[PersonLabel]:
        """Every label a session may see (all when `shared` or for the operator), oldest first."""
        rows = self._visible("labels", LABEL_FIELDS, owner, shared)
        return [PersonLabel(video, prompt, {key: v for key, v in zip(DIMENSIONS, scores) if v is not None}, who, sha,
                            at) for video, sha, prompt, *scores, who, at in rows]

    def preferences(self, owner: str | None = None, shared: bool = True) -> list[Preference]:
        return [Preference(*row) for row in self._visible("preferences", PREFERENCE_FIELDS, owner, shared)]

    def _visible(self, table: str, names: tuple, owner: str | None, shared: bool) -> list[tuple]:
        mine = "" if shared or owner is None else " WHERE owner = ?"
        with self._lock:
            return self._db.execute(f"SELECT {', '.join(names)} FROM {table}{mine} ORDER BY id",
                                    () if not mine else (owner,)).fetchall()

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
