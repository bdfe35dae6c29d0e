"""The `streams` stream: the definitions of every Communications Mining stream of each dataset."""

from unittest import TestCase

from airbyte_cdk.test.mock_http import HttpMocker

from unit_tests.mock_server.config import ConfigBuilder
from unit_tests.mock_server.reading import read_stream, records_of
from unit_tests.mock_server.request_builder import CmRequestBuilder
from unit_tests.mock_server.response_builder import CmResponseBuilder, a_dataset, a_stream


class TestStreamsStream(TestCase):
    @HttpMocker()
    def test_given_two_datasets_when_read_then_each_datasets_streams_carry_its_project_and_name(self, http_mocker):
        http_mocker.get(
            CmRequestBuilder.datasets_endpoint().build(),
            CmResponseBuilder.datasets(a_dataset("acme", "collections", "d1"), a_dataset("globex", "2024", "d2")).build(),
        )
        http_mocker.get(CmRequestBuilder.dataset_streams_endpoint("acme", "collections").build(), CmResponseBuilder.streams(a_stream("triage", "d1")).build())
        http_mocker.get(CmRequestBuilder.dataset_streams_endpoint("globex", "2024").build(), CmResponseBuilder.streams(a_stream("raw", "d2")).build())
        records = records_of(read_stream("streams", ConfigBuilder().build()))
        assert sorted((r["project"], r["dataset"], r["name"]) for r in records) == [("acme", "collections", "triage"), ("globex", "2024", "raw")]
        assert all(isinstance(r["dataset"], str) for r in records)  # a dataset named "2024" stays a string
        assert next(r for r in records if r["name"] == "triage")["model"]["version"] == 3

    @HttpMocker()
    def test_given_a_dataset_without_streams_when_read_then_no_records_and_no_error(self, http_mocker):
        http_mocker.get(CmRequestBuilder.datasets_endpoint().build(), CmResponseBuilder.datasets(a_dataset("acme", "collections", "d1")).build())
        http_mocker.get(CmRequestBuilder.dataset_streams_endpoint("acme", "collections").build(), CmResponseBuilder.streams().build())
        output = read_stream("streams", ConfigBuilder().build())
        assert not output.records and not output.errors
