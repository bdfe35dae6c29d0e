"""The manifest's requester: the CDK's HttpRequester, sending through transport.DeadlineAdapter.

The response deadline on the body rides on the authenticator (a requests response hook), which
every requester has. The deadline on the status line and the headers needs the session's adapter
(a server that sends its status line, then one header byte every half second, never trips the
read timeout), and the CDK offers no public way to a requester's session. The manifest names this
class (a `CustomRequester`) so that every request the connector sends, the declarative streams'
too, is bounded whole; api.CmApi builds its requesters from the same definitions.

Why a subclass and not the CDK's HttpRequester as built by its factory: a `CustomRequester`
receives the manifest's fields as its class annotates them, and HttpRequester takes its headers,
query and bodies only as a built `request_options_provider`, which the factory builds only for a
plain `HttpRequester`. So this class annotates them and builds that provider as the factory does.
What the factory would add and this does not: its message repository (the Connector Builder's
request log) and the test-read limits' `disable_retries`.
"""

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

from airbyte_cdk.sources.declarative.requesters.http_requester import HttpRequester
from airbyte_cdk.sources.declarative.requesters.request_options.interpolated_request_options_provider import (
    InterpolatedRequestOptionsProvider,
)

from source_commsmining.transport import mount_deadline_adapter

RequestInput = Optional[Union[str, Mapping[str, Any]]]


@dataclass
class DeadlineHttpRequester(HttpRequester):
    """HttpRequester (path, query, headers, authenticator, error handler, timeouts as declared) whose
    session sends through DeadlineAdapter: the whole response, headers included, within the deadline."""

    request_parameters: RequestInput = None
    request_headers: RequestInput = None
    request_body_json: RequestInput = None
    request_body_data: RequestInput = None

    def __post_init__(self, parameters: Mapping[str, Any]) -> None:
        parameters = parameters or {}
        if self.request_options_provider is None:
            self.request_options_provider = InterpolatedRequestOptionsProvider(
                config=self.config,
                parameters=parameters,
                request_parameters=self.request_parameters,
                request_headers=self.request_headers,
                request_body_json=self.request_body_json,  # type: ignore[arg-type]
                request_body_data=self.request_body_data,
            )
        super().__post_init__(parameters)
        # No public way to the session the CDK's HttpClient sends with (pinned in unit_tests/test_cdk_contract.py).
        mount_deadline_adapter(self._http_client._session)
