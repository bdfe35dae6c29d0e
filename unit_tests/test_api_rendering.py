"""CmApi renders each stream endpoint's path, query and headers once per slice (api._Endpoint):
what it sends must be what the manifest's requester, rendered on every call, would send."""

import requests_mock

from source_commsmining import SourceCommsmining
from source_commsmining.api import CmStream
from unit_tests.conftest import config

BASE = "https://acme.reinfer.io/api/v1/datasets"


def _api(**extra):
    source = SourceCommsmining(config=config(**extra))
    return source._api(source._config)


def test_calls_go_to_the_manifest_paths_with_its_query_and_headers_for_each_stream():
    api = _api(max_results=20, max_filtered=5)
    a, b = CmStream("acme", "collections", "triage"), CmStream("globex", "claims-ds", "claims")
    with requests_mock.Mocker() as mock:
        for cm in (a, b):
            mock.get(f"{BASE}/{cm.project}/{cm.dataset}/streams/{cm.stream}/results",
                     json={"status": "ok", "results": [], "continuation": "c1", "more_results": False, "num_filtered": 0})
            mock.post(f"{BASE}/{cm.project}/{cm.dataset}/streams/{cm.stream}/advance", json={"status": "ok", "sequence_id": "c1"})
        for cm in (a, b, a):
            api.results(cm)
            api.advance(cm, "c1")
        api.results(a, at_most=3)
    sent = [(r.method, r.path, r.qs, r.headers.get("Accept"), r.headers.get("Authorization")) for r in mock.request_history]
    assert [s[1] for s in sent if s[0] == "GET"] == [
        "/api/v1/datasets/acme/collections/streams/triage/results",
        "/api/v1/datasets/globex/claims-ds/streams/claims/results",
        "/api/v1/datasets/acme/collections/streams/triage/results",
        "/api/v1/datasets/acme/collections/streams/triage/results",
    ]
    gets = [s for s in sent if s[0] == "GET"]
    assert [g[2] for g in gets[:3]] == [{"max_results": ["20"], "max_filtered": ["5"]}] * 3
    assert gets[3][2] == {"max_results": ["3"], "max_filtered": ["5"]}  # a record cap's last call asks for fewer
    assert {s[3] for s in sent} == {"application/json"}
    assert {s[4] for s in sent} == {"Bearer " + config()["api_token"]}
    assert [r.json() for r in mock.request_history if r.method == "POST"] == [{"sequence_id": "c1"}] * 3
