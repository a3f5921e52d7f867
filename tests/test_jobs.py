"""Requests wait their turn for the one model, in order of arrival, and a cancel takes a waiting
request out of the line at once."""

import threading
import time

import pytest

from vs2demo.jobs import Cancelled, CancelToken, ModelSlot


def take_turn(slot, token, log, name, hold_s=0.05):
    try:
        with slot.turn(token) as waiting:
            log.append((name, "waits", list(waiting)))
            log.append((name, "holds"))
            time.sleep(hold_s)
    except Cancelled:
        log.append((name, "cancelled"))


def test_turns_go_in_order_of_arrival_and_say_how_many_are_ahead():
    slot, log, threads = ModelSlot(), [], []
    first = CancelToken()
    with slot.turn(first) as waiting:
        assert list(waiting) == []  # nobody ahead: the model is this request's at once
        for name in ("b", "c"):
            threads.append(threading.Thread(target=take_turn, args=(slot, CancelToken(), log, name)))
            threads[-1].start()
            while slot.in_line() < len(threads) + 1:
                time.sleep(0.001)
    for thread in threads:
        thread.join(5)
    holds = [entry[0] for entry in log if entry[1] == "holds"]
    assert holds == ["b", "c"]
    waited = {entry[0]: entry[2] for entry in log if entry[1] == "waits"}
    assert waited["b"][0] == 1 and waited["c"][0] == 2  # told their place when they joined
    assert slot.in_line() == 0


def test_a_cancel_takes_a_waiting_request_out_of_the_line_at_once():
    slot, log = ModelSlot(), []
    token = CancelToken()
    with slot.turn(CancelToken()) as waiting:
        list(waiting)
        waiter = threading.Thread(target=take_turn, args=(slot, token, log, "late"))
        waiter.start()
        while slot.in_line() < 2:
            time.sleep(0.001)
        token.cancel()
        waiter.join(5)
        # Out of the line while the holder still has the model: the cancel did it, not a turn.
        assert not waiter.is_alive() and log == [("late", "cancelled")] and slot.in_line() == 1
    assert slot.in_line() == 0


def test_the_model_passes_on_when_the_holder_fails():
    slot = ModelSlot()
    with pytest.raises(RuntimeError):
        with slot.turn(CancelToken()) as waiting:
            list(waiting)
            raise RuntimeError("the decoder exploded")
    with slot.turn(CancelToken()) as waiting:
        assert list(waiting) == []
