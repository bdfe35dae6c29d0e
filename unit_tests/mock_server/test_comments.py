"""The `comments` stream: the export of every source's comments, incremental per source."""

from unittest import TestCase

from airbyte_cdk.models import SyncMode
from airbyte_cdk.test.mock_http import HttpMocker
from airbyte_cdk.test.state_builder import StateBuilder
from freezegun import freeze_time

from unit_tests.mock_server.config import ConfigBuilder
from unit_tests.mock_server.reading import read_stream, records_of
from unit_tests.mock_server.request_builder import CmRequestBuilder
from unit_tests.mock_server.response_builder import CmResponseBuilder, a_comment, a_source

NOW = "2024-06-01T12:00:00.000000Z"  # the export's end: the sync's start
INBOX = "18ba5ce699f8da1f"


def _cursors(output):
    state = output.most_recent_state.stream_state.__dict__
    return {entry["partition"]["source_id"]: entry["cursor"]["timestamp"] for entry in state["states"]}


@freeze_time(NOW)
class TestCommentsStream(TestCase):
    @HttpMocker()
    def test_given_two_pages_when_read_then_the_second_is_asked_after_the_first_continuation(self, http_mocker):
        http_mocker.get(CmRequestBuilder.sources_endpoint().build(), CmResponseBuilder.sources(a_source("acme", "inbox", INBOX)).build())
        http_mocker.get(
            CmRequestBuilder.comments_endpoint("acme", "inbox").with_from_timestamp("1970-01-01T00:00:00.000000Z", NOW).build(),
            CmResponseBuilder.comments(a_comment(INBOX, 1, "2024-01-01T00:00:01Z")).with_continuation("k1").build(),
        )
        http_mocker.get(
            CmRequestBuilder.comments_endpoint("acme", "inbox").with_after("k1", NOW).build(),
            CmResponseBuilder.comments(a_comment(INBOX, 2, "2024-01-01T00:00:02Z")).build(),
        )
        output = read_stream("comments", ConfigBuilder().with_comments_in_one_window().build(), SyncMode.incremental)
        records = records_of(output)
        assert [r["uid"] for r in records] == [f"{INBOX}.{1:016x}", f"{INBOX}.{2:016x}"]
        assert all(r["project"] == "acme" and r["source"] == "inbox" for r in records)
        assert _cursors(output) == {INBOX: "2024-01-01T00:00:02.000000Z"}

    @HttpMocker()
    def test_given_a_state_when_read_then_the_export_starts_the_lookback_before_the_cursor(self, http_mocker):
        state = StateBuilder().with_stream_state(
            "comments", {"states": [{"partition": {"parent_slice": {}, "source_id": INBOX}, "cursor": {"timestamp": "2024-05-10T00:00:00.000000Z"}}]}
        ).build()
        http_mocker.get(CmRequestBuilder.sources_endpoint().build(), CmResponseBuilder.sources(a_source("acme", "inbox", INBOX)).build())
        http_mocker.get(
            CmRequestBuilder.comments_endpoint("acme", "inbox").with_from_timestamp("2024-05-07T00:00:00.000000Z", NOW).build(),
            CmResponseBuilder.comments(a_comment(INBOX, 3, "2024-05-11T00:00:00.000000Z")).build(),
        )
        output = read_stream("comments", ConfigBuilder().with_comments_in_one_window().with_comments_lookback_days(3).build(), SyncMode.incremental, state)
        assert [r["uid"] for r in records_of(output)] == [f"{INBOX}.{3:016x}"]
        assert _cursors(output) == {INBOX: "2024-05-11T00:00:00.000000Z"}

    @HttpMocker()
    def test_given_a_start_date_when_read_for_the_first_time_then_the_export_starts_there(self, http_mocker):
        http_mocker.get(CmRequestBuilder.sources_endpoint().build(), CmResponseBuilder.sources(a_source("acme", "inbox", INBOX)).build())
        http_mocker.get(
            CmRequestBuilder.comments_endpoint("acme", "inbox").with_from_timestamp("2024-01-01T00:00:00.000000Z", NOW).build(),
            CmResponseBuilder.comments().build(),
        )
        output = read_stream("comments", ConfigBuilder().with_comments_in_one_window().with_start_date("2024-01-01T00:00:00Z").build(), SyncMode.incremental)
        assert not output.records and not output.errors
