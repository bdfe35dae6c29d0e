"""A state file in a shape the CDK would silently ignore (legacy, LEGACY or typeless messages) is refused; stream and global states are read."""

import json

import pytest
from airbyte_cdk.models import AirbyteStateMessageSerializer, FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_commsmining import SourceCommsmining


@pytest.mark.parametrize(
    "state, words",
    [
        ({"stream_results": {"states": []}}, "legacy state shape"),
        ([{"type": "LEGACY", "data": {"stream_results": {}}}], "type LEGACY"),
        ([{"stream": {"stream_descriptor": {"name": "stream_results"}, "stream_state": {"states": []}}}], "no `type`"),
    ],
)
def test_read_state_refuses_what_the_cdk_would_ignore(tmp_path, state, words):
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))
    with pytest.raises(AirbyteTracedException) as raised:
        SourceCommsmining.read_state(str(path))
    assert raised.value.failure_type == FailureType.config_error
    assert words in raised.value.message and "stream_results" in raised.value.message


def test_read_state_still_reads_stream_and_global_states(tmp_path):
    stream = {"type": "STREAM", "stream": {"stream_descriptor": {"name": "stream_results"}, "stream_state": {"states": []}}}
    path = tmp_path / "state.json"
    path.write_text(json.dumps([stream]))
    assert [AirbyteStateMessageSerializer.dump(m) for m in SourceCommsmining.read_state(str(path))] == [stream]
