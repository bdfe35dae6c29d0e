"""stream_results: a result the API serves without a uid or without its own continuation."""

import threading

import requests_mock

from unit_tests.conftest import batch, catalog, comment, config, definition, run_read, stream_url


def _body(*results, continuation="b1", more=False):
    return {"status": "ok", "results": list(results), "num_filtered": 0, "more_results": more, "continuation": continuation}


def test_a_comment_without_uid_is_keyed_by_source_id_and_id():
    bare = comment(7)
    del bare["uid"]
    with requests_mock.Mocker() as m:
        m.get(stream_url(), json=_body({"comment": bare, "prediction": None, "continuation": "c7"}))
        m.post(stream_url(action="advance"), json={"status": "ok"})
        output = run_read(config(), catalog("stream_results"))
    assert [r.record.data["uid"] for r in output.records] == [f"{bare['source_id']}.{bare['id']}"]


def test_a_result_that_cannot_be_keyed_fails_the_batch_names_it_and_advances_nothing():
    good, bad = comment(1), comment(2)
    for key in ("uid", "source_id"):
        del bad[key]
    with requests_mock.Mocker() as m:
        m.get(stream_url(), json=_body({"comment": good, "prediction": None, "continuation": "c1"},
                                       {"comment": bad, "prediction": None, "continuation": "c2"}, continuation="b9"))
        advance = m.post(stream_url(action="advance"), json={"status": "ok"})
        output = run_read(config(), catalog("stream_results"), expecting_exception=True)
    assert output.records == [] and advance.call_count == 0
    error = output.errors[-1].trace.error
    assert "result 2 of 2" in error.message and bad["id"] in error.message and "'b9'" in error.message
    assert "not advanced" in error.message


def test_a_result_without_comment_fails_the_batch_too():
    with requests_mock.Mocker() as m:
        m.get(stream_url(), json=_body({"prediction": None, "continuation": "c1"}))
        advance = m.post(stream_url(action="advance"), json={"status": "ok"})
        output = run_read(config(), catalog("stream_results"), expecting_exception=True)
    assert advance.call_count == 0 and "no comment in result 1 of 1" in output.errors[-1].trace.error.message


def test_a_result_without_its_own_continuation_is_still_delivered_and_the_batch_advanced():
    body = batch([1, 2], "b1", False)
    del body["results"][1]["continuation"]
    with requests_mock.Mocker() as m:
        definition(m)
        m.get(stream_url(), json=body)
        advance = m.post(stream_url(action="advance"), json={"status": "ok"})
        output = run_read(config(), catalog("stream_results"))
    assert [r.record.data.get("continuation") for r in output.records] == ["c-1", None]
    assert [h.json() for h in advance.request_history] == [{"sequence_id": "b1"}]


def test_a_server_that_ignores_the_advance_does_not_make_the_reader_loop(monkeypatch):
    """The same non-empty batch after every advance: delivered again a few times (at least once), then a warning."""
    from source_commsmining.stream_reading import STUCK_CALLS

    waits = []
    monkeypatch.setattr("source_commsmining.stream_reading.STUCK_WAITS_SECONDS", (0.01, 0.02, 0.03, 0.04))
    real_wait = threading.Event.wait

    def wait(self, timeout=None):
        if threading.current_thread() is not threading.main_thread():  # e.g. the response-deadline watchdog
            return real_wait(self, timeout)
        waits.append(timeout)  # the reader (inline, one stream) pauses without waiting
        return self.is_set()

    monkeypatch.setattr("threading.Event.wait", wait)

    with requests_mock.Mocker() as m:
        definition(m)
        m.get(stream_url(), json=batch([1, 2], "b1", True))
        advance = m.post(stream_url(action="advance"), json={"status": "ok"})
        output = run_read(config(), catalog("stream_results"))
    assert len(output.records) == 2 * STUCK_CALLS and advance.call_count == STUCK_CALLS
    assert any("stuck at continuation b1" in log.log.message for log in output.logs)
    assert waits == [0.01, 0.02, 0.03, 0.04]  # a growing pause before each repeat
