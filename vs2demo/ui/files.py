"""The files the app touches for its users: which ones a request may open, where downloads are
written, and when both are deleted.

A public Space is called by strangers. A request may open a video only if it was uploaded to this
app (Gradio keeps uploads in its upload folder) or if it is one of the example clips, named by its
example name; anything else is refused with one message that says nothing about the path, so the
API cannot be used to read the server's files or to learn which exist.

Uploads and downloads hold people's videos, prompts and the model's text. They live in a folder of
this app's own under the temporary folder, which the app marks when it makes it (`MARKER`): nothing is
ever deleted outside a marked folder, so a same-named folder of someone else's is left alone (the app
then takes the next name). Whatever is older than `MAX_AGE_S` is deleted at start-up (a killed run
leaves files behind) and every `SWEEP_EVERY_S` while the app runs. The uploads together may fill at
most the operator's bound (`make_room`): the oldest unused go first, and past that an upload is refused.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
import time
import uuid
from functools import cache
from pathlib import Path
from typing import NamedTuple

from gradio.utils import get_upload_folder

from ..errors import UserInputError
from ..settings import environment
from .controls import example_rows

log = logging.getLogger(__name__)

MAX_AGE_S = 3600  # a file younger than this is kept: a page left open for an hour can still download
SWEEP_EVERY_S = 1800
# The first choice; see own_folder. Not "vs2demo": `python -m vs2demo` run from the temporary folder
# would import that folder as a namespace package instead of the installed one.
ROOT = Path(tempfile.gettempdir()) / "vs2demo-files"
MARKER = ".vs2demo-owned"
# An upload younger than this is never deleted to make room: the page uploads a video when it is
# chosen, and the request that uses it may come minutes later.
UPLOAD_GRACE_S = 300
# Uploads are refused when they would leave less than this free on the upload folder's disk.
MIN_FREE_DISK_BYTES = 1_000_000_000

REFUSED = ("This app opens only videos uploaded with the request (in the page: the upload box; with "
           "gradio_client: handle_file(path)) or one of its example clips by name ({examples}). Uploads "
           "are kept for an hour: upload the file again.")


def refused() -> UserInputError:
    return UserInputError(REFUSED.format(examples=", ".join(example_paths()) or "none here"))


# ---- where files live --------------------------------------------------------------------------

def own_folder() -> Path:
    """This app's folder under the temporary folder: ROOT, or ROOT-2, ROOT-3, ... when a folder of that
    name is there and is not this app's (it lacks the marker, or another user owns it)."""
    return _own_folder(ROOT)


@cache
def _own_folder(first: Path) -> Path:
    for number in range(1, 100):
        folder = first if number == 1 else first.with_name(f"{first.name}-{number}")
        try:
            folder.mkdir(mode=0o700, parents=True)
            (folder / MARKER).write_text("Made by vs2demo for its uploads and downloads, which it deletes when old.\n")
        except FileExistsError:
            if not _marked(folder):
                continue
        if folder != first:
            log.warning("%s is not this app's (it has no %s), so it is left alone: this app keeps its uploads and "
                        "downloads in %s", first, MARKER, folder)
        return folder
    raise RuntimeError(f"no folder of this app's own could be made beside {first}")


def _marked(folder: Path) -> bool:
    """A folder this app made: a real folder of this user's with the marker file in it."""
    try:
        marker = (folder / MARKER).lstat()
        return not folder.is_symlink() and folder.stat().st_uid == os.getuid() and stat.S_ISREG(marker.st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def use_own_upload_folder() -> Path:
    """Makes Gradio keep uploads in this app's folder (unless GRADIO_TEMP_DIR says otherwise), so
    what a killed run left there can be found and deleted. Call before the app is built."""
    if not environment().upload_dir:
        os.environ["GRADIO_TEMP_DIR"] = str(own_folder() / "uploads")  # what Gradio reads
    return upload_folder()


def upload_folder() -> Path:
    return Path(os.path.realpath(get_upload_folder()))


def owns_upload_folder() -> bool:
    """True when uploads go to this app's own folder; a folder the user chose may be shared with
    other apps, whose files are theirs to delete."""
    return upload_folder() == Path(os.path.realpath(own_folder() / "uploads"))


def downloads_folder() -> Path:
    return own_folder() / "downloads"


def download_path(name: str, suffix: str) -> str:
    """Where to write a file for a download button: a fresh folder of its own (two downloads of the
    same name never overwrite each other). The sweep deletes it after MAX_AGE_S."""
    folder = downloads_folder() / uuid.uuid4().hex
    folder.mkdir(parents=True, mode=0o700)
    return str(folder / f"{Path(name).stem or 'results'}{suffix}")


def write_download(content: str, name: str, suffix: str) -> str:
    """A download button's file holding `content` (see download_path)."""
    path = download_path(name, suffix)
    Path(path).write_text(content, encoding="utf-8")
    return path


# ---- what a request may open --------------------------------------------------------------------

@cache
def example_paths() -> dict[str, str]:
    """The example clips, by example name (their file name in assets/)."""
    return {row["video"]: os.path.realpath(row["path"]) for row in example_rows()}


def _allowed(path: str) -> str:
    """The path if it is an example clip or a file in the upload folder, else the refusal."""
    resolved = os.path.realpath(path)  # symlinks and `..` resolved before comparing
    if resolved in example_paths().values():
        return resolved
    uploads = str(upload_folder())
    # A missing upload (expired) gets the same message as a path outside: otherwise the answer
    # would tell whether somebody uploaded a file with a given content (uploads are named by hash).
    if resolved.startswith(uploads + os.sep) and os.path.isfile(resolved):
        # Marked as in use: the sweeps (this app's and Gradio's, by ctime) keep what a session still
        # works with, such as a video uploaded again an hour after its first upload (same hash).
        os.utime(resolved)
        return path
    raise refused()


def api_video(value) -> str:
    """The server path of a video an API request names: an uploaded file (a FileData, as
    gradio_client's handle_file sends it) or an example clip's name. UserInputError otherwise,
    the same for every refused value."""
    if value is None or value == "":
        raise UserInputError("No video given: upload one with the request, or name an example clip.")
    if isinstance(value, str):
        # A plain string is never a path: Gradio checks only file objects (with their `meta`).
        if value in example_paths():
            return example_paths()[value]
        raise refused()
    if isinstance(value, dict):
        if (value.get("meta") or {}).get("_type") != "gradio.FileData" or not isinstance(value.get("path"), str):
            raise refused()
        return _allowed(value["path"])
    path = getattr(value, "path", None)  # gradio.data_classes.FileData
    if not isinstance(path, str):
        raise refused()
    return _allowed(path)


def uploaded_path(path) -> str:
    """The path a page's upload or example component gave; refused unless it is in the upload
    folder or an example clip (Gradio checks this too; this keeps it true whatever the route)."""
    if not path:
        raise UserInputError("No video given: upload one or pick an example.")
    return _allowed(str(path))


# ---- deleting what is old -------------------------------------------------------------------------

def _newest_change(entry: Path) -> float:
    """The latest modification of an entry or anything directly inside it."""
    stamps = [entry.lstat().st_mtime]
    if entry.is_dir() and not entry.is_symlink():
        stamps += [child.lstat().st_mtime for child in entry.iterdir()]
    return max(stamps)


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def _in(entry: Path, paths) -> bool:
    inside = str(entry) + os.sep
    return any(path == str(entry) or path.startswith(inside) for path in paths)


def sweep(max_age_s: float = MAX_AGE_S, now: float | None = None, keep=frozenset()) -> int:
    """Deletes downloads and uploads (when the upload folder is this app's) older than `max_age_s`,
    except those holding a path in `keep` (the files waiting and running requests name). Returns
    how many entries went. Safe while requests run: anything younger than `max_age_s` is kept."""
    now = time.time() if now is None else now
    places = [downloads_folder()] + ([upload_folder()] if owns_upload_folder() else [])
    entries = [child for place in places if place.is_dir() for child in place.iterdir()]
    removed = 0
    for entry in entries:
        try:
            if now - _newest_change(entry) > max_age_s and not _in(entry, keep):
                _remove(entry)
                removed += 1
        except FileNotFoundError:  # deleted meanwhile (Gradio's own cleanup)
            continue
    if removed:
        log.info("deleted %d old upload and download folder(s)", removed)
    return removed


# ---- room for uploads -----------------------------------------------------------------------------

class Refusal(NamedTuple):
    status: int
    detail: str


def _megabytes(size: float) -> str:
    return f"{size / 1e6:,.0f} MB" if size >= 10e6 else f"{size / 1e6:,.1f} MB"


def _uploads(folder: Path) -> list[tuple[float, int, Path]]:
    """(last used, bytes, folder) of each upload: Gradio keeps each in a folder named by its hash.
    Loose files are uploads still arriving (the reservations count them) or left by a crash."""
    found = []
    for entry in folder.iterdir():
        try:
            if entry.is_dir() and not entry.is_symlink():
                size = sum(path.lstat().st_size for path in entry.rglob("*"))
                found.append((_newest_change(entry), size, entry))
        except FileNotFoundError:  # deleted meanwhile
            continue
    return found


def make_room(size: int, max_bytes: int, arriving: int = 0, keep=frozenset(), now: float | None = None) -> Refusal | None:
    """Makes room for an upload of `size` bytes, beside `arriving` bytes of uploads still coming in:
    within `max_bytes` for all uploads together (when the upload folder is this app's) and leaving
    MIN_FREE_DISK_BYTES free on its disk. The uploads least recently used go first, never one younger
    than UPLOAD_GRACE_S or holding a path in `keep`. Returns None when it fits, else the refusal."""
    now = time.time() if now is None else now
    folder = upload_folder()
    folder.mkdir(parents=True, exist_ok=True)
    own = owns_upload_folder()
    if own and size > max_bytes:
        return Refusal(413, f"This upload ({_megabytes(size)}) is larger than all the room this server "
                            f"keeps for uploads ({_megabytes(max_bytes)}).")
    uploads = _uploads(folder) if own else []  # a folder shared with other apps is theirs to empty
    used = sum(upload_size for _, upload_size, _ in uploads)
    incoming = size + arriving
    over_quota = used + incoming - max_bytes if own else 0
    short = max(over_quota, MIN_FREE_DISK_BYTES + incoming - shutil.disk_usage(folder).free)
    for last_used, upload_size, entry in sorted(uploads):
        if short <= 0:
            break
        if now - last_used >= UPLOAD_GRACE_S and not _in(entry, keep):
            _remove(entry)  # frees both the quota and the disk
            short, over_quota, used = short - upload_size, over_quota - upload_size, used - upload_size
    if short <= 0:
        return None
    wait = f"Uploads are kept at least {UPLOAD_GRACE_S // 60} minutes: try again later."
    if over_quota > 0:
        return Refusal(507, f"The room for uploads on this server is full ({_megabytes(used + arriving)} of "
                            f"{_megabytes(max_bytes)}). {wait}")
    return Refusal(507, f"The server's disk is nearly full. {wait}")
