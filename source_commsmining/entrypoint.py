"""The CDK's AirbyteEntrypoint, with config errors that name the field and a secret filter that skips implausible tokens."""

from typing import Any, Mapping

from airbyte_cdk.entrypoint import AirbyteEntrypoint
from airbyte_cdk.models import ConnectorSpecification
from airbyte_cdk.sources.utils.schema_helpers import split_config
from airbyte_cdk.utils.airbyte_secrets_utils import get_secrets, update_secrets

from source_commsmining.config import credential_secrets, validate_against_spec
from source_commsmining.errors import is_plausible_secret, register_secret


class CommsminingEntrypoint(AirbyteEntrypoint):
    """The CDK entrypoint, with config errors that name the offending field."""

    @staticmethod
    def validate_connection(source_spec: ConnectorSpecification, config: Mapping[str, Any]) -> None:
        connector_config, _ = split_config(config)
        validate_against_spec(connector_config, source_spec.connectionSpecification)

    @staticmethod
    def set_up_secret_filter(config: Any, connection_specification: Mapping[str, Any]) -> None:
        """As the CDK's, without secrets too short (or too common) to mask: the CDK's filter would replace
        them in every line, protocol words included. Such a token is refused before anything is sent."""
        found = get_secrets(connection_specification, config) + credential_secrets(config)  # and a top-level api_token
        secrets = [secret for secret in found if is_plausible_secret(secret)]
        update_secrets(list(secrets))  # a list of its own: register_secret appends to the CDK's
        for secret in secrets:
            register_secret(secret)
