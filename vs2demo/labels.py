"""People's own labels, given in the app as they look ("label as you look"): a 1-5 per dimension for
one video and prompt, or an A/B/tie preference between two videos. Validated here, kept in the
results store (store.ResultStore.put_label / put_preference), turned into `metrics.Label`s as a
labels file would be, and written as the CSVs `metrics.read_labels` and `metrics.read_pairs` read.
Pure Python: no Gradio, no torch.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone

from . import DIMENSIONS
from .errors import UserInputError
from .metrics import Label, video_key
from .records_io import spreadsheet_safe

MAX_VIDEO_CHARS = 300  # a video's name as a label keeps it
MAX_PROMPT_CHARS = 4000
MAX_WHO_CHARS = 60
PREFERENCE_CHOICES = ("a", "b", "tie")
LABEL_COLUMNS = ("video", "prompt", *DIMENSIONS, "who")
PAIR_COLUMNS = ("video_a", "video_b", "prompt", "preference", "who")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def session_name(session: str | None) -> str:
    """A short stable name for a page session (what a label says without "Your name" where its
    browser keeps no id yet, see labeller): the same session always gives the same name, and it
    tells nothing of the session's id."""
    return f"tab-{hashlib.sha256((session or '').encode()).hexdigest()[:6]}"


# ---- who labels: a name kept per browser ---------------------------------------------------------------
# A browser keeps a random id of its own (ui/labelling.py keeps it in the browser's localStorage, made
# once): it owns that browser's labels, so that a reload or a restart of the app shows the person
# their own labels again, and where the store is not shared no other browser sees them (the id is
# never shown: 128 random bits cannot be guessed). It comes from the browser: checked as untrusted.
BROWSER_ID = re.compile(r"[0-9a-f]{32}")


def new_browser_id() -> str:
    return secrets.token_hex(16)


def kept_browser(value) -> dict | None:
    """What a browser keeps for labelling ({"id": 32 hex digits, "name": its typed name or ""}), or
    None when it keeps nothing usable (a first visit, or a value not of this app)."""
    if not isinstance(value, dict) or not isinstance(value.get("id"), str) or not BROWSER_ID.fullmatch(value["id"]):
        return None
    try:
        name = checked_who_text(value.get("name"))
    except UserInputError:
        name = ""  # a bad kept name is dropped, the id stays
    return {"id": value["id"], "name": name}


def browser_name(browser_id: str) -> str:
    """The name a browser's labels carry without "Your name": short, stable, telling nothing of the id."""
    return f"browser-{hashlib.sha256(browser_id.encode()).hexdigest()[:6]}"


def labeller(typed, browser, session: str | None) -> tuple[str, str]:
    """(who, owner) of a label: who is the typed name, else the browser's name (else, with no browser
    id yet, the session's); the owner is the browser ("browser:" and its id), else the session."""
    kept = kept_browser(browser)
    name = checked_who_text(typed)
    if kept is None:
        return name or session_name(session), session or ""
    return name or browser_name(kept["id"]), f"browser:{kept['id']}"


def checked_text(what: str, value, most: int, empty_ok: bool = True) -> str:
    """`value` as one line of printable text of at most `most` characters, else a UserInputError."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise UserInputError(f"{what} must be text.")
    value = value.strip()
    if len(value) > most:
        raise UserInputError(f"{what} may be at most {most:,} characters long ({len(value):,} given).")
    if not empty_ok and not value:
        raise UserInputError(f"{what} is missing.")
    if any(not ch.isprintable() and ch not in "\n\t" for ch in value):
        raise UserInputError(f"{what} holds characters that cannot be shown.")
    return value


def checked_who_text(who) -> str:
    """A typed "Your name": one line of at most MAX_WHO_CHARS characters ("" when none)."""
    name = checked_text("Your name", who, MAX_WHO_CHARS)
    if "\n" in name or "\t" in name:
        raise UserInputError("Your name must be one line.")
    return name


def checked_score(key: str, value) -> int | None:
    """A person's score: a whole number 1 to 5 (4.0 counts, 4.5 and "4" do not), or None."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise UserInputError(f"A label for {key.replace('_', ' ')} must be a whole number from 1 to 5, not {value!r}.")
    return value


@dataclass(frozen=True)
class PersonLabel:
    """One person's scores for one video and prompt (a dimension not scored yet is absent). `video`
    is the name records are matched by (metrics.video_key)."""

    video: str
    prompt: str
    scores: dict[str, int]
    who: str
    video_sha256: str | None = None
    labelled_at: str = field(default_factory=now)


def person_label(video, prompt, scores: dict, who: str, video_sha256: str | None = None) -> PersonLabel:
    """A label checked on the way in: a video name, a prompt, scores 1-5 by dimension (each
    optional, at least one), a name; UserInputError says what is wrong."""
    name = checked_text("The video's name", video, MAX_VIDEO_CHARS, empty_ok=False)
    unknown = set(scores) - set(DIMENSIONS)
    if unknown:
        raise UserInputError(f"Unknown dimension {sorted(unknown)[0]!r}: label {', '.join(DIMENSIONS)}.")
    kept = {key: checked_score(key, scores.get(key)) for key in DIMENSIONS}
    kept = {key: value for key, value in kept.items() if value is not None}
    if not kept:
        raise UserInputError("A label needs a score (1 to 5) in at least one dimension.")
    if video_sha256 is not None and (not isinstance(video_sha256, str) or len(video_sha256) != 64):
        raise UserInputError("The video's SHA-256 must be 64 hexadecimal digits.")
    return PersonLabel(video_key(name), checked_text("The prompt", prompt, MAX_PROMPT_CHARS), kept,
                       checked_text("Your name", who, MAX_WHO_CHARS, empty_ok=False), video_sha256)


@dataclass(frozen=True)
class Preference:
    """One person's preference between two videos for one prompt: "a", "b" or "tie"."""

    video_a: str
    video_b: str
    prompt: str
    preference: str
    who: str
    labelled_at: str = field(default_factory=now)


def preference(video_a, video_b, prompt, choice, who: str) -> Preference:
    a = video_key(checked_text("Video A's name", video_a, MAX_VIDEO_CHARS, empty_ok=False))
    b = video_key(checked_text("Video B's name", video_b, MAX_VIDEO_CHARS, empty_ok=False))
    if a == b:
        raise UserInputError("A preference needs two different videos.")
    if choice not in PREFERENCE_CHOICES:
        raise UserInputError(f"A preference is a, b or tie, not {choice!r}.")
    return Preference(a, b, checked_text("The prompt", prompt, MAX_PROMPT_CHARS), choice,
                      checked_text("Your name", who, MAX_WHO_CHARS, empty_ok=False))


# ---- as a labels file would give them ------------------------------------------------------------------

def metrics_labels(labels: list[PersonLabel]) -> list[Label]:
    """One `metrics.Label` per video, as Explore matches them (by video_key): where several people
    labelled a video, the newest label of each dimension stands (people's labels are compared one
    to one with the model's, as a labels file gives them)."""
    newest: dict[str, PersonLabel] = {}
    merged: dict[str, dict[str, int]] = {}
    for label in sorted(labels, key=lambda item: item.labelled_at):
        newest[label.video] = label
        merged.setdefault(label.video, {}).update(label.scores)
    return [Label(key, {k: float(v) for k, v in merged[key].items()}, label.prompt, {"who": label.who})
            for key, label in newest.items()]


def with_stored(file_labels: list[Label], stored: list[PersonLabel]) -> tuple[list[Label], str]:
    """A labels file's labels and the stored ones together: for the same video the file's win. And
    one sentence saying what was taken (empty when nothing was stored)."""
    if not stored:
        return file_labels, ""
    given = {video_key(label.video) for label in file_labels}
    mine = metrics_labels(stored)
    kept = [label for label in mine if label.video not in given]
    said = f"{len(kept):,} video{'s' if len(kept) != 1 else ''} labelled in this app"
    if len(kept) < len(mine):
        said += (f" ({len(mine) - len(kept):,} also in the labels file, whose labels were taken for "
                 f"{'them' if len(mine) - len(kept) > 1 else 'it'})")
    return file_labels + kept, said


def labels_csv(labels: list[PersonLabel]) -> str:
    """The labels as `metrics.read_labels` reads them: one row per label, `who` an extra column."""
    rows = ([label.video, label.prompt, *(label.scores.get(key, "") for key in DIMENSIONS), label.who]
            for label in labels)
    return _csv(LABEL_COLUMNS, rows)


def pairs_csv(preferences: list[Preference]) -> str:
    """The preferences as `metrics.read_pairs` reads them."""
    return _csv(PAIR_COLUMNS, ([item.video_a, item.video_b, item.prompt, item.preference, item.who]
                               for item in preferences))


def _csv(header, rows) -> str:
    """As results_to_csv writes: CRLF rows (a prompt with a line break stays one cell), and no text a
    spreadsheet would run as a formula."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([spreadsheet_safe(cell) for cell in row] for row in rows)
    return out.getvalue()


def relabel(collection, label: Label) -> int:
    """Puts a new label for one video into an Explore set (explore.Collection) in place, as
    build_collection would have put it: its rows' people columns, `labelled` and `disagreement`.
    Milliseconds at 10,000 records, where building the set again takes a tenth of a second and
    more. Returns how many rows it touched."""
    import pandas as pd  # here: the store and the CLI import this module, and need no pandas

    key = video_key(label.video)
    collection.labels[key] = label
    frame = collection.frame
    if frame.empty:
        return 0
    at = frame.index[frame["video"].map(video_key) == key]
    if not len(at):
        if label.video not in collection.unmatched_labels:
            collection.unmatched_labels.append(label.video)
        return 0
    gaps = pd.Series(float("nan"), index=at)
    for dim in DIMENSIONS:
        human = label.scores.get(dim)
        frame[f"label_{dim}"] = frame[f"label_{dim}"].astype(float)  # all None where nothing was labelled
        frame.loc[at, f"label_{dim}"] = float("nan") if human is None else float(human)
        if human is not None:
            gap = (frame.loc[at, f"{dim}_expected"].astype(float) - human).abs()
            gaps = gaps.where(gaps >= gap, gap).where(gap.notna(), gaps)  # the largest gap; NaN where none
    frame.loc[at, "labelled"] = True
    frame["disagreement"] = frame["disagreement"].astype(float)
    frame.loc[at, "disagreement"] = gaps
    return len(at)


def export_labels(store_file, out, pairs_out=None) -> str:
    """Writes every label a results store keeps to `out` (labels_csv) and, with `pairs_out`, its
    preferences (pairs_csv): the operator's export (`python -m vs2demo export-labels`). Says what
    was written."""
    from .store import ResultStore  # the store keeps these labels: it imports this module

    store = ResultStore(store_file)
    try:
        labels, preferences = store.labels(), store.preferences()
    finally:
        store.close()
    for path in (out, pairs_out):
        if path is not None and path.suffix.lower() != ".csv":
            raise UserInputError(f"{path} must end in .csv.")
    out.write_text(labels_csv(labels), encoding="utf-8")
    said = f"{len(labels):,} label{'s' if len(labels) != 1 else ''} written to {out}"
    if pairs_out is not None:
        pairs_out.write_text(pairs_csv(preferences), encoding="utf-8")
        said += f"; {len(preferences):,} preference{'s' if len(preferences) != 1 else ''} to {pairs_out}"
    elif preferences:
        said += f" ({len(preferences):,} A/B preferences are kept too: --pairs FILE.csv writes them)"
    return said + "."
