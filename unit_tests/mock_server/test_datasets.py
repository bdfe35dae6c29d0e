"""The `datasets` stream: every dataset the token can see, or one project's."""

from unittest import TestCase

from airbyte_cdk.models import FailureType
from airbyte_cdk.test.mock_http import HttpMocker

from unit_tests.mock_server.config import ConfigBuilder
from unit_tests.mock_server.reading import read_stream, records_of
from unit_tests.mock_server.request_builder import CmRequestBuilder
from unit_tests.mock_server.response_builder import CmResponseBuilder, a_dataset, an_error


class TestDatasetsStream(TestCase):
    @HttpMocker()
    def test_given_datasets_when_read_then_each_is_a_record_with_unknown_keys_kept(self, http_mocker):
        http_mocker.get(
            CmRequestBuilder.datasets_endpoint().build(),
            CmResponseBuilder.datasets(a_dataset("acme", "collections", "d1", a_future_key={"kept": True}), a_dataset("globex", "claims", "d2")).build(),
        )
        records = records_of(read_stream("datasets", ConfigBuilder().build()))
        assert [(r["id"], r["owner"], r["name"]) for r in records] == [("d1", "acme", "collections"), ("d2", "globex", "claims")]
        assert records[0]["a_future_key"] == {"kept": True}

    @HttpMocker()
    def test_given_a_project_when_read_then_only_that_projects_datasets_are_asked_for(self, http_mocker):
        http_mocker.get(CmRequestBuilder.datasets_endpoint("acme").build(), CmResponseBuilder.datasets(a_dataset("acme", "collections", "d1")).build())
        assert [r["id"] for r in records_of(read_stream("datasets", ConfigBuilder().with_project("acme").build()))] == ["d1"]

    @HttpMocker()
    def test_given_a_missing_permission_when_read_then_a_config_error_names_the_permission(self, http_mocker):
        http_mocker.get(CmRequestBuilder.datasets_endpoint().build(), an_error(403, "missing permission 'View labels'"))
        output = read_stream("datasets", ConfigBuilder().build(), expecting_exception=True)
        error = output.errors[0].trace.error
        assert error.failure_type == FailureType.config_error and "View labels" in error.message
