"""What a request to the model is: a piece of work that can be cancelled wherever it is, and that
waits its turn for the one model.

No Gradio here. The app runs each request with its own `CancelToken` (see `ui/server.py`); the
code that samples frames, waits for the model and generates checks the token of the request it runs
for, so a Stop or a client's cancel ends the work itself, not only the connection.
"""

from __future__ import annotations

import contextvars
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager


class Cancelled(BaseException):
    """The request was cancelled (Stop, a client's cancel). Not an error: nothing is recorded.

    A BaseException, like asyncio.CancelledError, so the `except Exception` that turns one video's
    failure into a failed record does not turn a cancel into one.
    """


class CancelToken:
    """Set once when the request is cancelled; the work checks it where it can stop safely."""

    def __init__(self):
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raises Cancelled once the request has been cancelled."""
        if self._event.is_set():
            raise Cancelled()

    def wait(self, timeout: float) -> bool:
        """Sleeps up to `timeout` seconds, waking early on a cancel; True when cancelled."""
        return self._event.wait(timeout)


# The token of the request this thread works for. The server sets it for each request; code run
# outside a request (the CLI, tests) gets a token nobody cancels.
_CURRENT: contextvars.ContextVar[CancelToken | None] = contextvars.ContextVar("vs2demo_cancel", default=None)


def current_token() -> CancelToken:
    return _CURRENT.get() or CancelToken()


def use_token(token: CancelToken) -> None:
    """Makes `token` the current request's in this context: the server runs each request in a
    context of its own (`contextvars.copy_context().run(use_token, token)`)."""
    _CURRENT.set(token)


# Who a request is for: its session, which the app sets for each request (ui/server.py). None outside
# the app (the CLI, tests): the operator, who may be served any record.
_REQUESTER: contextvars.ContextVar[str | None] = contextvars.ContextVar("vs2demo_requester", default=None)


def current_requester() -> str | None:
    return _REQUESTER.get()


def use_requester(session: str | None) -> None:
    _REQUESTER.set(session)


class ModelSlot:
    """One model, one GPU: one video at a time, in order of arrival.

    A request takes a turn per video, not per request: a batch of 30 videos rejoins the end of the
    line after each one, so a person who asks for one video waits for at most one of the batch's.
    Waiting wakes on a cancel, so a request cancelled while it waits leaves the line at once.
    """

    POLL_S = 0.1  # how often a waiter rechecks its place and its token

    def __init__(self):
        self._lock = threading.Condition()
        self._line: deque[object] = deque()  # the first one holds the model

    def in_line(self) -> int:
        """Requests holding the model or waiting for it."""
        with self._lock:
            return len(self._line)

    @contextmanager
    def turn(self, token: CancelToken) -> Iterator[Iterator[int]]:
        """Joins the line; inside, iterate the yielded generator to wait: it yields how many are
        ahead whenever that changes, and ends when the model is this request's. Leaving the block
        (finished, failed or cancelled) gives the model to the next in line."""
        ticket = object()
        with self._lock:
            self._line.append(ticket)
        try:
            yield self._wait(ticket, token)
        finally:
            with self._lock:
                self._line.remove(ticket)
                self._lock.notify_all()

    def _wait(self, ticket: object, token: CancelToken) -> Iterator[int]:
        told = None
        while True:
            token.check()
            with self._lock:
                ahead = self._line.index(ticket)
                if ahead == 0:
                    return
                if ahead == told:
                    self._lock.wait(self.POLL_S)
                    continue
            told = ahead
            yield ahead

