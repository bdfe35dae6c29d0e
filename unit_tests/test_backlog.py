"""The backlog between the dataset history's partition threads and the output (backlog.py)."""

import threading
import time

from source_commsmining.backlog import Backlog


def test_records_waiting_for_the_output_never_exceed_the_limit():
    waiting = Backlog(limit=5, stall_s=10)
    handed, written = [], []

    def partition(name: str) -> None:
        for i in range(40):
            waiting.enter()
            handed.append((name, i))

    threads = [threading.Thread(target=partition, args=(name,)) for name in "abc"]
    for thread in threads:
        thread.start()
    while len(written) < 120:
        if len(handed) > len(written):
            assert len(handed) - len(written) <= 5
            written.append(handed[len(written)])
            waiting.leave()
        else:
            time.sleep(0.001)
    for thread in threads:
        thread.join(5)
    assert sorted(written) == sorted((name, i) for name in "abc" for i in range(40))
    assert waiting.most == 5


def test_places_that_are_never_written_cost_one_wait_not_a_hung_read():
    waiting = Backlog(limit=2, stall_s=0.2)
    waiting.enter()
    waiting.enter()  # two records the output never sees (a failed read, a test's record limit)
    started = time.monotonic()
    for _ in range(10):
        waiting.enter()
        waiting.leave()
    took = time.monotonic() - started
    assert 0.2 <= took < 2, took  # one stall, then the count starts again


def test_a_write_with_nothing_waiting_is_not_counted_ahead():
    waiting = Backlog(limit=1, stall_s=10)
    waiting.leave()  # a record that did not come through the backlog
    waiting.enter()
    done = threading.Event()
    threading.Thread(target=lambda: (waiting.enter(), done.set()), daemon=True).start()
    assert not done.wait(0.2)  # the limit holds: the extra write did not open a second place
    waiting.leave()
    assert done.wait(5)


def test_the_end_of_a_read_lets_every_waiting_thread_go_at_once():
    from source_commsmining import backlog

    waiting = backlog.start(Backlog(limit=1, stall_s=30))
    waiting.enter()
    done = threading.Event()
    threading.Thread(target=lambda: (waiting.enter(), done.set()), daemon=True).start()
    assert not done.wait(0.2)
    backlog.stop()  # the read failed or ended: a partition thread must not sit out the stall
    assert done.wait(2) and backlog.current() is None


def test_a_page_bigger_than_the_limit_goes_alone_and_nothing_joins_it_until_it_is_written():
    waiting = Backlog(limit=3, stall_s=10)
    waiting.enter(5)  # nothing waiting: a page larger than the limit is not held forever
    done = threading.Event()
    threading.Thread(target=lambda: (waiting.enter(2), done.set()), daemon=True).start()
    waiting.leave(2)
    assert not done.wait(0.2)  # 3 unwritten + 2 more would exceed 3
    waiting.leave(2)
    assert done.wait(5) and waiting.unwritten == 3
