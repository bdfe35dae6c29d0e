"""Error helpers shared by config checks, `check` and the reader."""

from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.airbyte_secrets_utils import filter_secrets
from airbyte_cdk.utils.traced_exception import AirbyteTracedException


def config_error(message: str) -> AirbyteTracedException:
    return AirbyteTracedException(message=message, internal_message=message, failure_type=FailureType.config_error)


def describe(error: BaseException) -> str:
    """A user-facing one-liner; filter_secrets because exception texts (e.g. a rejected header) may quote the token."""
    if isinstance(error, AirbyteTracedException):
        return filter_secrets(error.message or error.internal_message or type(error).__name__)
    return filter_secrets(f"{type(error).__name__}: {error}")
