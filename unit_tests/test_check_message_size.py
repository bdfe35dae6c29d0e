"""check's message stays short however many configured streams it cannot find."""

from unit_tests.conftest import config, run_check


def test_check_names_the_first_few_unknown_streams_and_counts_the_rest(capsys):
    import requests_mock

    streams = [{"project": "acme", "dataset": "collections", "stream": f"s{i}"} for i in range(1000)]
    with requests_mock.Mocker() as m:
        m.get(requests_mock.ANY, status_code=404, json={"status": "error", "message": "no such stream"})
        m.get("https://acme.reinfer.io/api/v1/sources", json={"status": "ok", "sources": []})
        status = run_check(config(streams=streams, max_retries=0), capsys)
    assert status["status"] == "FAILED"
    assert "and 995 more" in status["message"] and len(status["message"]) < 3000, len(status["message"])
