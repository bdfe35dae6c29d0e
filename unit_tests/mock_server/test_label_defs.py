"""The `label_defs` stream: one record per label of every label group (taxonomy) of each dataset."""

from unittest import TestCase

from airbyte_cdk.test.mock_http import HttpMocker

from unit_tests.mock_server.config import ConfigBuilder
from unit_tests.mock_server.reading import read_stream, records_of
from unit_tests.mock_server.request_builder import CmRequestBuilder
from unit_tests.mock_server.response_builder import CmResponseBuilder, a_dataset


def _mock_one_dataset(http_mocker, **dataset_fields):
    dataset = a_dataset("acme", "collections", "d1", **dataset_fields)
    http_mocker.get(CmRequestBuilder.datasets_endpoint().build(), CmResponseBuilder.datasets(dataset).build())
    http_mocker.get(CmRequestBuilder.dataset_endpoint("acme", "collections").build(), CmResponseBuilder.dataset(dataset).build())


class TestLabelDefsStream(TestCase):
    @HttpMocker()
    def test_given_label_groups_when_read_then_a_record_per_label_keyed_by_its_group(self, http_mocker):
        _mock_one_dataset(
            http_mocker,
            label_defs=[{"name": "Billing"}],
            label_groups=[
                {"name": "default", "label_defs": [{"name": "Billing"}, {"name": "Complaint"}]},
                {"name": "tone", "label_defs": [{"name": "Complaint"}]},
            ],
        )
        records = records_of(read_stream("label_defs", ConfigBuilder().build()))
        keys = sorted((r["project"], r["dataset"], r["label_group"], r["name"]) for r in records)
        assert keys == [("acme", "collections", "default", "Billing"), ("acme", "collections", "default", "Complaint"),
                        ("acme", "collections", "tone", "Complaint")]

    @HttpMocker()
    def test_given_no_label_groups_when_read_then_the_top_level_labels_are_the_default_group(self, http_mocker):
        _mock_one_dataset(http_mocker, label_defs=[{"name": "Billing"}, {"name": "Urgent"}])
        records = records_of(read_stream("label_defs", ConfigBuilder().build()))
        assert sorted((r["label_group"], r["name"]) for r in records) == [("default", "Billing"), ("default", "Urgent")]

    @HttpMocker()
    def test_given_nested_label_names_when_read_then_parent_is_the_name_without_its_last_level(self, http_mocker):
        _mock_one_dataset(http_mocker, label_defs=[{"name": "2024"}, {"name": "2024 > Refund"}, {"name": "2024 > Refund > Partial"}])
        parents = {r["name"]: r.get("parent") for r in records_of(read_stream("label_defs", ConfigBuilder().build()))}
        assert parents == {"2024": None, "2024 > Refund": "2024", "2024 > Refund > Partial": "2024 > Refund"}
