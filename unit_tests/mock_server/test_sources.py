"""The `sources` stream: every source the token can see, or one project's."""

from unittest import TestCase

from airbyte_cdk.models import FailureType
from airbyte_cdk.test.mock_http import HttpMocker

from unit_tests.mock_server.config import ConfigBuilder
from unit_tests.mock_server.reading import read_stream, records_of
from unit_tests.mock_server.request_builder import CmRequestBuilder
from unit_tests.mock_server.response_builder import CmResponseBuilder, a_source, an_error


class TestSourcesStream(TestCase):
    @HttpMocker()
    def test_given_two_sources_when_read_then_one_record_each_with_the_api_fields(self, http_mocker):
        http_mocker.get(
            CmRequestBuilder.sources_endpoint().build(),
            CmResponseBuilder.sources(a_source("acme", "inbox", "s1"), a_source("globex", "claims", "s2")).build(),
        )
        output = read_stream("sources", ConfigBuilder().build())
        assert [(r["id"], r["owner"], r["name"]) for r in records_of(output)] == [("s1", "acme", "inbox"), ("s2", "globex", "claims")]

    @HttpMocker()
    def test_given_a_project_when_read_then_only_that_projects_sources_are_asked_for(self, http_mocker):
        http_mocker.get(CmRequestBuilder.sources_endpoint("acme").build(), CmResponseBuilder.sources(a_source("acme", "inbox", "s1")).build())
        output = read_stream("sources", ConfigBuilder().with_project("acme").build())
        assert [r["id"] for r in records_of(output)] == ["s1"]

    @HttpMocker()
    def test_given_a_rejected_token_when_read_then_a_config_error_names_the_token(self, http_mocker):
        http_mocker.get(CmRequestBuilder.sources_endpoint().build(), an_error(401, "Unauthorized"))
        output = read_stream("sources", ConfigBuilder().build(), expecting_exception=True)
        assert not output.records
        error = output.errors[0].trace.error
        assert error.failure_type == FailureType.config_error and "api_token" in error.message
