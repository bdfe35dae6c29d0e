"""Config values at the edges: whole-number floats, dot segments as names, tokens an HTTP header cannot carry."""

import pytest
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_commsmining import SourceCommsmining
from source_commsmining.config import validate_config
from unit_tests.conftest import config


def _spec():
    import logging

    return SourceCommsmining().spec(logging.getLogger("test")).connectionSpecification


def test_whole_number_floats_become_integers_in_the_transformation_and_in_validation():
    cfg = config(max_results=16.0, max_filtered=5.0, parallel_streams=2.0, max_records_per_sync=100.0, max_retries=3.0)
    transformed = dict(SourceCommsmining(config=cfg)._config)  # the manifest's config_normalization_rules
    validated = dict(cfg)
    validate_config(validated, _spec())
    for result in (transformed, validated):
        values = [result[k] for k in ("max_results", "max_filtered", "parallel_streams", "max_records_per_sync", "max_retries")]
        assert values == [16, 5, 2, 100, 3] and all(type(v) is int for v in values)


def test_a_fractional_integer_setting_is_refused_naming_the_field():
    with pytest.raises(AirbyteTracedException) as raised:
        validate_config(config(max_results=16.5), _spec())
    assert "`max_results`" in raised.value.message


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"project": "."}, "project"),
        ({"streams": [{"project": "..", "dataset": "collections", "stream": "triage"}]}, "streams[0].project"),
    ],
)
def test_dot_segments_are_refused_naming_the_field(overrides, field):
    with pytest.raises(AirbyteTracedException) as raised:
        validate_config(config(**overrides), _spec())
    assert raised.value.failure_type.value == "config_error"
    assert f"`{field}`" in raised.value.message and "not a name" in raised.value.message


@pytest.mark.parametrize("token", ["tok€n-secret-77", "token-“quoted”", "tok\u200ben"])
def test_a_token_an_http_header_cannot_carry_is_refused_without_repeating_it(token):
    with pytest.raises(AirbyteTracedException) as raised:
        validate_config(config(api_token=token), _spec())
    assert raised.value.failure_type.value == "config_error" and "`api_token`" in raised.value.message
    assert token not in raised.value.message and token not in (raised.value.internal_message or "")


def test_a_latin1_token_is_accepted():
    validate_config(config(api_token="tökén-secret-77"), _spec())


@pytest.mark.parametrize(
    "endpoint, ascii_url",
    [
        ("https://tënant.reinfer.io", "https://xn--tnant-nsa.reinfer.io"),
        ("https://TËNANT.reinfer.io:8443/api/", "https://xn--tnant-nsa.reinfer.io:8443/api/"),
        ("https://münchen.example.com/org/tenant/reinfer_", "https://xn--mnchen-3ya.example.com/org/tenant/reinfer_"),
    ],
)
def test_an_internationalised_host_is_refused_with_the_ascii_url_to_write(endpoint, ascii_url):
    with pytest.raises(AirbyteTracedException) as raised:
        validate_config(config(api_endpoint=endpoint), _spec())
    message = raised.value.message
    assert "`api_endpoint`" in message and "ASCII (punycode)" in message and message.endswith(f"set `api_endpoint` to {ascii_url}")
    assert "parser" not in message
    validate_config(config(api_endpoint=ascii_url), _spec())  # what it says to write is accepted


def test_a_host_that_is_no_internationalised_name_is_refused_naming_api_endpoint():
    with pytest.raises(AirbyteTracedException) as raised:
        validate_config(config(api_endpoint="https://a\u200db.reinfer.io"), _spec())
    assert "`api_endpoint`" in raised.value.message and "nor a valid internationalised domain name" in raised.value.message


def test_the_manifest_turns_every_whole_number_float_of_the_integer_settings_into_an_integer():
    # The manifest's config_normalization_rules list the settings one by one: in step with config.INTEGER_SETTINGS.
    from source_commsmining.config import INTEGER_SETTINGS

    transformed = SourceCommsmining(config=config(**{name: 7.0 for name in INTEGER_SETTINGS}))._config
    assert {name: (transformed[name], type(transformed[name])) for name in INTEGER_SETTINGS} == {name: (7, int) for name in INTEGER_SETTINGS}
    kept = SourceCommsmining(config=config(max_results=7.5, max_retries=True))._config
    assert (kept["max_results"], kept["max_retries"]) == (7.5, True)  # left to validation, which names the field
