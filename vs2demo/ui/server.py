"""The HTTP side of the app, where a public Space meets strangers: request bodies bounded before
they are parsed, model requests bounded per client, uploads bounded by the room kept for them,
cancels that stop the work itself (also a cancel that arrives before its job has started), and the
temporary files swept at start-up and on a schedule.

How Gradio cancels, and why the handlers run as they do here: a cancel (the page's Stop, or
gradio_client's `job.cancel()`) makes Gradio cancel the asyncio task of the job and free its
concurrency slot. A plain function running in a worker thread does not notice and runs on; a
generator only notices at its next `yield`. So each model handler runs, through `cancellable`, in a
thread of its own, driven step by step from an async generator: the cancel reaches that async
generator at once, sets the request's `CancelToken` (which the waiting, the sampling and the
generation check), and waits there until the work has really stopped, so the next job cannot start
while the previous one still holds the model.

gradio_client sends a cancel before it knows the job's id (while it uploads, or right after
submitting) with no event id: Gradio then finds no job to stop and runs it anyway. `RequestGuard`
notes such cancels per session and endpoint, and `cancellable` checks for one when its job starts.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import ipaddress
import json
import logging
import os
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from .. import jobs
from ..settings import ServerLimits
from . import files

log = logging.getLogger(__name__)

# Request bodies (JSON: file references, prompts, a prompts CSV) are refused above this size before
# they are read into memory; files come through Gradio's upload route and its max_file_size.
MAX_REQUEST_BYTES = 1024 * 1024
# A cancel that named no job stops the next job of its session and endpoint that starts this soon
# after it (gradio_client goes on uploading and submitting after such a cancel).
PENDING_CANCEL_S = 600
PENDING_CANCEL_MAX = 10_000  # cancels naming made-up sessions must not grow memory without end
# How long a cancelled request waits for its work to stop before it lets Gradio move on (the model
# stays held by the work until it has stopped, whatever happens here).
STOP_WAIT_S = 30
# Gradio names each job's task "{session}_{fn_index}<gradio-sep>{event}".
GRADIO_TASK_SEPARATOR = "<gradio-sep>"
# Every event that uses the model: Gradio runs up to 8 at once, and they take turns for the model
# one video at a time (jobs.ModelSlot), so a long batch does not make a person with one video wait
# for all of it. More wait in Gradio's queue, each told its place.
MODEL_EVENT = {"concurrency_id": "model", "concurrency_limit": 8}
# The page's own model events. trigger_mode "multiple" works around a Gradio 6.31 front-end race:
# after Stop cancels a streaming event, the page sometimes keeps it marked as pending, and with the
# default mode ("once") the next click on Run sends nothing (3 times in 8 in a browser test; 0 in 10
# with this; test_browser's stop test runs again after a Stop). The cost: a double click asks twice;
# the second request waits its turn for the model (a greedy one then comes from the results store).
# Remove once the front end clears the flag.
PAGE_MODEL_EVENT = {**MODEL_EVENT, "trigger_mode": "multiple"}
# The routes by which a browser (queue/join) and an HTTP caller (call/<api>, call/v2/<api>) ask for
# an event; gradio_client uses queue/join.
JOIN_PATH = re.compile(r"/(?:queue/join|call/(?:v2/)?(?P<api>[^/]+))/?$")


# ---- cancels that name no job ------------------------------------------------------------------------

class PendingCancels:
    """Cancels that arrived while no job of their session and endpoint ran, kept until a job of that
    session and endpoint starts (and is stopped at once) or until they are PENDING_CANCEL_S old."""

    def __init__(self):
        self._lock = threading.Lock()
        self._noted: dict[str, float] = {}  # "{session}_{fn_index}" -> when

    def note(self, key: str) -> None:
        with self._lock:
            self._forget_old()
            self._noted.pop(key, None)  # re-inserted last: the dict stays in the order cancels came
            self._noted[key] = time.monotonic()
            while len(self._noted) > PENDING_CANCEL_MAX:
                del self._noted[next(iter(self._noted))]

    def take(self, key: str | None) -> bool:
        """True (once) when a cancel is pending for this job's session and endpoint."""
        if key is None:
            return False
        with self._lock:
            self._forget_old()
            return self._noted.pop(key, None) is not None

    def _forget_old(self) -> None:
        now = time.monotonic()
        for key in [key for key, at in self._noted.items() if now - at > PENDING_CANCEL_S]:
            del self._noted[key]


PENDING_CANCELS = PendingCancels()


def _job_key(task) -> str | None:
    """The job a task runs, "{session}_{fn_index}", or None for a task that is not a Gradio job's."""
    name = task.get_name() if task is not None else ""
    return name.split(GRADIO_TASK_SEPARATOR)[0] if GRADIO_TASK_SEPARATOR in name else None


# ---- who asks, and what Gradio's queue holds for them ------------------------------------------------

def client_address(scope, proxy_hops: int) -> str:
    """The address a request counts against. With no proxy of another machine in front, it is
    Gradio's own `request.client.host`: the connection's address, or X-Forwarded-For as uvicorn reads
    it when the connection comes from FORWARDED_ALLOW_IPS (this machine only, by default: a proxy
    here). Behind `proxy_hops` such proxies (a Hugging Face Space's, whose connections come from a
    private address uvicorn does not trust), it is the address the outermost proxy saw: each proxy
    appends the address it was called from, so that entry is the `proxy_hops`-th from the right;
    the entries left of it are the client's own to write, and never read. An IPv6 address counts
    by its /64 network: one machine commonly holds a whole /64."""
    if proxy_hops:
        forwarded = [entry.strip() for name, value in scope.get("headers") or [] if name == b"x-forwarded-for"
                     for entry in value.decode("latin-1").split(",") if entry.strip()]
        if forwarded:
            return _client(forwarded[-min(proxy_hops, len(forwarded))])
    client = scope.get("client")
    return _client(client[0]) if client else "unknown"


def _client(entry: str) -> str:
    """An address as clients are counted: without the port some proxies add ("1.2.3.4:5678",
    "[2001:db8::1]:5678"), an IPv6 one as its /64 network."""
    if entry.startswith("[") and "]" in entry:
        entry = entry[1:entry.index("]")]
    elif entry.count(":") == 1:
        entry = entry.rsplit(":", 1)[0]
    try:
        address = ipaddress.ip_address(entry)
    except ValueError:
        return entry  # not an address (a unix socket, a proxy's name): counted as it is
    if address.version == 4:
        return str(address)
    if address.ipv4_mapped is not None:  # an IPv4 client on an IPv6 socket
        return str(address.ipv4_mapped)
    return str(ipaddress.ip_network(f"{address}/64", strict=False))


def _events(blocks) -> list:
    """Every event in Gradio's queue, waiting or running (an event moves from one to the other at once).
    Gradio 6.31 has no public view of its queue, so this reads its internals; the tests of requests
    per client and of uploads in use fail if they change."""
    queue = blocks._queue
    waiting = [event for line in queue.event_queue_per_concurrency_id.values() for event in line.queue]
    return waiting + [event for job in queue.active_jobs if job for event in job]


def files_in_use(blocks) -> set[str]:
    """The real paths of the files that waiting and running requests name (a FileData's `path`):
    such an upload is not deleted, however old."""
    found = set()

    def collect(value):
        if isinstance(value, dict):
            path = value.get("path")
            values = value.values()
        else:
            path = getattr(value, "path", None)
            values = value if isinstance(value, (list, tuple)) else ()
        if isinstance(path, str):
            found.add(os.path.realpath(path))
        for item in values:
            collect(item)

    for event in _events(blocks):
        collect(getattr(event.data, "data", None))
    return found


def _asks_for_the_model(blocks, api: str | None, body: bytes) -> bool:
    """Whether a join asks for an event that uses the model (by its api name or its fn_index)."""
    if api is not None:
        asked = [fn for fn in blocks.fns.values() if fn.api_name == api]
    else:
        try:
            asked = [blocks.fns.get(json.loads(body)["fn_index"])]
        except (ValueError, KeyError, TypeError):
            return False  # Gradio answers a malformed join itself
    return any(fn is not None and fn.concurrency_id == MODEL_EVENT["concurrency_id"] for fn in asked)


# ---- the middleware ------------------------------------------------------------------------------------

class RequestGuard:
    """ASGI middleware in front of Gradio's routes: refuses request bodies over `max_body` bytes
    before reading them, a model request from a client that already has
    `limits.max_requests_per_client` waiting or running, and an upload there is no room for (the
    oldest unused uploads make room first: files.make_room); and notes the cancels that name no
    running job (see PendingCancels). Each refusal is an HTTP error with a JSON `detail`, which the
    page shows."""

    def __init__(self, app, max_body: int = MAX_REQUEST_BYTES, pending: PendingCancels = PENDING_CANCELS,
                 limits: ServerLimits = ServerLimits()):
        self.app = app
        self.max_body = max_body
        self.pending = pending
        self.limits = limits
        self.joining: Counter[str] = Counter()  # model requests let through, not yet in Gradio's queue
        self.arriving = 0  # bytes of the uploads let through that are still coming in
        self.room_lock = asyncio.Lock()  # one upload at a time is measured against the room left

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        if scope["path"].endswith("/upload"):
            return await self._upload(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.max_body:
            return await self._too_large(send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return await self._too_large(send)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if scope["path"].endswith("/cancel"):
            self._note_cancel(body)

        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        join = JOIN_PATH.search(scope["path"])
        if join is None or not _asks_for_the_model(scope["app"].get_blocks(), join["api"], body):
            return await self.app(scope, replay, send)
        await self._join(scope, replay, send)

    async def _join(self, scope, receive, send) -> None:
        """Lets a model request into Gradio's queue unless its client already has as many as it may."""
        client = client_address(scope, self.limits.proxy_hops)
        held = self.joining[client] + sum(
            1 for event in _events(scope["app"].get_blocks())
            if event.concurrency_id == MODEL_EVENT["concurrency_id"] and hasattr(event.request, "scope")
            and client_address(event.request.scope, self.limits.proxy_hops) == client)
        if held >= self.limits.max_requests_per_client:
            log.info("refused a model request from %s: it has %d waiting or running", client, held)
            requests = "request" if held == 1 else "requests"
            return await refuse(send, 429, f"You already have {held} {requests} waiting or running; wait for one "
                                           f"to finish (one address may have {self.limits.max_requests_per_client} "
                                           "at a time).")
        self.joining[client] += 1  # counted from here: a second join may come before this one is queued
        try:
            await self.app(scope, receive, send)
        finally:
            self.joining[client] -= 1
            if not self.joining[client]:
                del self.joining[client]

    async def _upload(self, scope, receive, send) -> None:
        """Lets an upload through once there is room for the size it declares (a refusal comes before
        any of it is read)."""
        declared = dict(scope.get("headers") or []).get(b"content-length", b"").decode("latin-1")
        if not declared.isdigit():
            return await refuse(send, 411, "An upload must say its size (Content-Length).")
        size = int(declared)
        async with self.room_lock:
            keep = files_in_use(scope["app"].get_blocks())
            refusal = await asyncio.to_thread(files.make_room, size, self.limits.uploads_max_bytes, self.arriving, keep)
            if refusal is None:
                self.arriving += size
        if refusal is not None:
            log.info("refused an upload of %d bytes: %s", size, refusal.detail)
            return await refuse(send, *refusal)
        try:
            await self.app(scope, receive, send)
        finally:
            self.arriving -= size

    def _note_cancel(self, body: bytes) -> None:
        try:
            request = json.loads(body)
            key = f"{request['session_hash']}_{request['fn_index']}"
        except (ValueError, KeyError, TypeError):
            return  # Gradio answers a malformed cancel itself
        # A cancel with a running job is Gradio's to deliver; one with an event id names a job
        # Gradio can still remove from its queue.
        if not request.get("event_id") and key not in {_job_key(task) for task in asyncio.all_tasks()}:
            self.pending.note(key)

    async def _too_large(self, send) -> None:
        await refuse(send, 413, f"The request is larger than {self.max_body // 1024} KiB. Send videos as uploaded "
                                "files (gradio_client: handle_file) and keep prompts and CSV text short.")


async def refuse(send, status: int, detail: str) -> None:
    """An HTTP error with a JSON `detail`, as FastAPI's own: the page shows it."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# ---- handlers that a cancel really stops -----------------------------------------------------------------

def _step(generator):
    try:
        return False, next(generator)
    except StopIteration:
        return True, None


def cancellable(handler):
    """A Gradio handler (a generator function) that a cancel stops wherever it is.

    The handler runs in a thread of its own, with the request's CancelToken as its
    `jobs.current_token()`; Gradio sees an async generator with the handler's signature. On a
    cancel (or when Gradio closes the stream) the token is set and the handler closed, and this
    waits until it has stopped. A job whose cancel arrived before it started yields nothing.
    """

    @functools.wraps(handler)
    async def run(*args, **kwargs):
        key = _job_key(asyncio.current_task())
        if PENDING_CANCELS.take(key):
            log.info("%s: cancelled before it started", handler.__name__)
            return
        token = jobs.CancelToken()
        context = contextvars.copy_context()  # Gradio's own context (progress, warnings) goes along
        context.run(jobs.use_token, token)
        context.run(jobs.use_requester, key.rsplit("_", 1)[0] if key else None)  # the job's session
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vs2demo-request")
        generator = context.run(handler, *args, **kwargs)  # a generator: nothing runs yet
        try:
            while True:
                done, item = await asyncio.wrap_future(worker.submit(context.run, _step, generator))
                if done:
                    return
                yield item
        except jobs.Cancelled:
            return
        finally:
            token.cancel()  # nothing checks it after a normal end; on a cancel, the work stops
            await _stopped(worker, context, generator, handler.__name__)

    return run


async def _stopped(worker: ThreadPoolExecutor, context, generator, name: str) -> None:
    """Waits (at most STOP_WAIT_S) until the handler's step in flight has ended and the handler is
    closed, which runs its `finally` blocks: the model turn is given back there."""
    def close():
        try:
            context.run(generator.close)
        except (Exception, jobs.Cancelled):
            log.debug("%s raised while closing", name, exc_info=True)

    closed = worker.submit(close)  # runs after the step in flight: one thread
    worker.shutdown(wait=False)
    try:
        await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(closed)), STOP_WAIT_S)
    except asyncio.TimeoutError:
        log.warning("%s has not stopped %d s after its cancel; the model stays with it until it does", name, STOP_WAIT_S)
    except asyncio.CancelledError:
        pass  # a second cancel: the first one is already being carried out


# ---- start-up and schedule ----------------------------------------------------------------------------

@asynccontextmanager
async def lifespan(app):
    """Sweeps old uploads and downloads at start-up and every SWEEP_EVERY_S, but for those that
    waiting and running requests name."""
    async def sweep():
        keep = files_in_use(app.get_blocks()) if app is not None else frozenset()
        await asyncio.to_thread(files.sweep, keep=keep)

    await sweep()

    async def on_schedule():
        while True:
            await asyncio.sleep(files.SWEEP_EVERY_S)
            await sweep()

    task = asyncio.create_task(on_schedule())
    try:
        yield
    finally:
        task.cancel()


# ---- a workaround: Gradio's diff of streamed outputs --------------------------------------------

def streamed_diff(old, new) -> list:
    """Gradio's `utils.diff` (the edits that turn one streamed output into the next, which its
    clients apply in order), with one bug fixed. In Gradio 6.31 a list's trailing deletes are
    renumbered (each one shifts the next) over every edit collected so far, its elements' own edits
    included, so a delete inside an element of a list is renumbered twice: gradio_client then fails
    with "list assignment index out of range". It showed when /rank re-ordered records whose
    token lists differ in length. Here only the list's own deletes are renumbered.
    tests/test_app.py checks that Gradio's own diff still breaks: when it stops, this can go."""

    def compare(a, b, path: list) -> list:
        if a == b:
            return []
        if type(a) is not type(b):
            return [["replace", path, b]]
        if isinstance(a, str) and b.startswith(a):
            return [["append", path, b[len(a):]]]
        if isinstance(a, list):
            common = min(len(a), len(b))
            edits = [edit for i in range(common) for edit in compare(a[i], b[i], path + [i])]
            # Deleting element `common` shifts the next one there: every delete names `common`.
            edits += [["delete", path + [common], None] for _ in range(common, len(a))]
            edits += [["add", path + [i], b[i]] for i in range(common, len(b))]
            return edits
        if isinstance(a, dict):
            edits = [edit for key in a if key in b for edit in compare(a[key], b[key], path + [key])]
            edits += [["delete", path + [key], None] for key in a if key not in b]
            edits += [["add", path + [key], b[key]] for key in b if key not in a]
            return edits
        return [["replace", path, b]]

    return compare(old, new, [])


def use_streamed_diff() -> None:
    """Make Gradio stream with `streamed_diff` (blocks.py calls it as `utils.diff`); Gradio's own
    stays in GRADIO_DIFF, for the test that tells when it has been fixed."""
    global GRADIO_DIFF
    from gradio import utils

    if utils.diff is not streamed_diff:
        GRADIO_DIFF = utils.diff
        utils.diff = streamed_diff


GRADIO_DIFF = None
