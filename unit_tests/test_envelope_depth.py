"""envelope.decode's one-parse depth test: a /results batch is refused exactly when a result nests more
than MAX_RESULT_DEPTH levels, and wrapping the body for that test never changes what it parses to."""

import json

import orjson
import pytest
import requests

from source_commsmining.envelope import MAX_RESULT_DEPTH, BadResponse, _loads, decode


def _nested(levels):
    value = 1
    for _ in range(levels):
        value = [value]
    return value


def _response(content, status=200):
    response = requests.Response()
    response.status_code = status
    response._content = content
    response.request = requests.Request("GET", "http://127.0.0.1/api/v1/datasets/p/d/streams/s/results").prepare()
    return response


def _text(levels):
    return b"[" * levels + b"1" + b"]" * levels


def _body(result_depth, model_depth=0):
    # a result object (1 level) holding a comment object (1 level) holding a list nest: result_depth levels in all
    result = b'{"comment": {"uid": "a.b", "x": ' + _text(result_depth - 2) + b'}, "continuation": "c1"}'
    model = b', "model": ' + _text(model_depth) if model_depth else b""
    return b'{"results": [' + result + b'], "continuation": "c1"' + model + b"}"


@pytest.mark.parametrize("depth", [3, 254, 255, 256, MAX_RESULT_DEPTH - 1, MAX_RESULT_DEPTH])
def test_a_result_up_to_the_limit_is_delivered(depth):
    body = decode(_response(_body(depth)), required=("results",), results_where="GET /results [s]")
    assert body["results"][0]["comment"]["x"] == _nested(depth - 2)


@pytest.mark.parametrize("depth", [MAX_RESULT_DEPTH + 1, MAX_RESULT_DEPTH + 100, 1020])
def test_a_result_past_the_limit_refuses_the_batch(depth):
    with pytest.raises(BadResponse, match=f"nested more than {MAX_RESULT_DEPTH} levels deep for GET /results"):
        decode(_response(_body(depth)), required=("results",), results_where="GET /results [s]")


def test_a_deep_value_outside_the_results_is_not_refused():
    body = decode(_response(_body(3, model_depth=900)), results_where="GET /results [s]")
    assert body["model"] == _nested(900)


def test_only_a_results_call_checks_depth():
    assert decode(_response(_body(MAX_RESULT_DEPTH + 1)))["continuation"] == "c1"


@pytest.mark.parametrize(
    "content",
    [b"1],[2", b"{}],[{}", b"[1],[2]", b"]", b"[", b"", b" ", b"\xef\xbb\xbf{}", b"{} {}", b"[]", b"1", b'"x"',
     b'{"a": 1}', b" {\"a\": [1, 2]} \n", b"[[[[1]]]]", b"[1,2]", b"null"],
)
def test_the_wrapped_parse_parses_exactly_as_a_plain_one(content):
    try:
        expected = orjson.loads(content)
    except orjson.JSONDecodeError:
        with pytest.raises(orjson.JSONDecodeError):
            _loads(content)
        return
    assert _loads(content)[0] == expected


def test_a_body_past_the_parser_still_fails_saying_so():
    content = json.dumps({"results": [], "continuation": "c"})[:-1].encode() + b', "m": ' + b"[" * 1100 + b"]" * 1100 + b"}"
    with pytest.raises(BadResponse, match="deeper than the 1024 levels"):
        decode(_response(content), results_where="GET /results [s]")
