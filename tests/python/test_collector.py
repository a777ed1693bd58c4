"""sztp.collector: the cycle collector paused while large data becomes objects, also from
threads whose pauses overlap (the server loads its state on a worker thread while another
load may be under way)."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from sztp.collector import cyclic_gc_paused


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.enable()
    yield
    if not was_enabled:
        gc.disable()


def test_paused_for_the_duration_and_back_on_after_an_error() -> None:
    with pytest.raises(RuntimeError), cyclic_gc_paused():
        assert not gc.isenabled()
        raise RuntimeError("the work failed")
    assert gc.isenabled()


def test_left_off_when_it_was_off_before() -> None:
    gc.disable()
    with cyclic_gc_paused():
        pass
    assert not gc.isenabled()


def test_overlapping_pauses_end_with_the_last_one() -> None:
    first_in = threading.Event()
    first_may_leave = threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with cyclic_gc_paused():
            first_in.set()
            first_may_leave.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    assert first_in.wait(10)
    with cyclic_gc_paused():
        first_may_leave.set()
        thread.join(10)
        seen.append(gc.isenabled())  # the first pause has ended, this one has not
    seen.append(gc.isenabled())
    assert seen == [False, True]
