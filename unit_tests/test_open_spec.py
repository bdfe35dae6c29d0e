"""The spec is open, as Airbyte's spec checks require: every object allows additional properties, and an unknown key is ignored with a warning naming it."""

import logging

import requests_mock
from airbyte_cdk.models import Status

from source_commsmining import SourceCommsmining
from unit_tests.conftest import BASE, config, stream_url


LOGGER = logging.getLogger("airbyte")


STREAM = {"status": "ok", "stream": {"name": "triage", "model": {"version": 1}}}


def _objects(schema, path="spec"):
    if isinstance(schema, dict):
        if schema.get("type") == "object" or "properties" in schema:
            yield path, schema
        for key, value in schema.items():
            yield from _objects(value, f"{path}.{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            yield from _objects(value, f"{path}[{index}]")


def test_every_object_in_the_spec_allows_additional_properties():
    """CAT's test_additional_properties_is_true."""
    spec = SourceCommsmining().spec(LOGGER).connectionSpecification
    objects = dict(_objects(spec))
    assert "spec.properties.streams.items" in objects
    assert {path: o.get("additionalProperties") for path, o in objects.items() if o.get("additionalProperties") is not True} == {}


def test_an_unknown_key_in_a_streams_entry_is_ignored_with_a_warning_naming_it(caplog):
    entry = {"project": "acme", "dataset": "collections", "stream": "triage", "strem_filter": "x"}
    with requests_mock.Mocker() as mock:
        mock.get(f"{BASE}/v1/sources", json={"status": "ok", "sources": []})
        mock.get(stream_url(action="")[:-1], json=STREAM)
        with caplog.at_level(logging.WARNING, logger="airbyte"):
            status = SourceCommsmining().check(LOGGER, config(streams=[entry]))
    assert status.status == Status.SUCCEEDED
    assert any("streams[0]" in r.getMessage() and "'strem_filter'" in r.getMessage() for r in caplog.records)
