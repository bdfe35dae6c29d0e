"""SourceCommsmining: the manifest, plus the Python that makes `stream_results` safe to read."""

import logging
from typing import Any, Iterator, List, Mapping, Optional

from airbyte_cdk.models import (
    AirbyteCatalog,
    AirbyteConnectionStatus,
    AirbyteMessage,
    AirbyteStateMessage,
    ConfiguredAirbyteCatalog,
    SyncMode,
)
from airbyte_cdk.sources.declarative.yaml_declarative_source import YamlDeclarativeSource
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_commsmining.api import CmApi
from source_commsmining.check import check_connection
from source_commsmining.config import validate_config
from source_commsmining.errors import config_error
from source_commsmining.messages import STREAM_NAME as RESULTS_STREAM
from source_commsmining.results_reader import ResultsReader
from source_commsmining.state import ResultsState

CHECK_MAX_RETRIES = 2


class SourceCommsmining(YamlDeclarativeSource):
    # The entrypoint's own spec check gives messages that do not name the field; ours does (validate()).
    check_config_against_spec = False

    def __init__(
        self,
        catalog: Optional[ConfiguredAirbyteCatalog] = None,
        config: Optional[Mapping[str, Any]] = None,
        state: Optional[List[AirbyteStateMessage]] = None,
        config_path: Optional[str] = None,
    ) -> None:
        super().__init__(path_to_yaml="manifest.yaml", catalog=catalog, config=config, state=state, config_path=config_path)

    def _validate(self):
        spec = self.spec(logging.getLogger("airbyte")).connectionSpecification
        return validate_config(dict(self._config), spec)

    def _api(self, config: Mapping[str, Any]) -> CmApi:
        return CmApi.from_manifest(self._constructor, self.resolved_manifest["definitions"], config)

    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        cm_streams = self._validate()
        check_config = {**self._config, "max_retries": min(int(self._config.get("max_retries", 8)), CHECK_MAX_RETRIES)}
        return check_connection(self._api(check_config), self._config["api_endpoint"], cm_streams, logger)

    def discover(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteCatalog:
        self._validate()
        catalog = super().discover(logger, config)
        for stream in catalog.streams:
            if stream.name == RESULTS_STREAM:
                # Full refresh would overwrite the table with only what is new since the last sync: a loss.
                stream.supported_sync_modes = [SyncMode.incremental]
                stream.source_defined_cursor = True
                stream.default_cursor_field = ["created_at"]
                stream.is_resumable = True
        return catalog

    def read(
        self,
        logger: logging.Logger,
        config: Mapping[str, Any],
        catalog: ConfiguredAirbyteCatalog,
        state: Optional[List[AirbyteStateMessage]] = None,
    ) -> Iterator[AirbyteMessage]:
        cm_streams = self._validate()
        results = [s for s in catalog.streams if s.stream.name == RESULTS_STREAM]
        others = ConfiguredAirbyteCatalog(streams=[s for s in catalog.streams if s.stream.name != RESULTS_STREAM])
        results_state = None
        if results:
            if results[0].sync_mode != SyncMode.incremental:
                raise config_error(
                    "stream_results can only be synced incrementally (append, or append + dedup on uid): a full "
                    "refresh would replace the table with just the comments new since the last sync."
                )
            # Refuse a state that does not fit before touching anything.
            results_state = ResultsState.parse(self._connector_state_manager.get_stream_state(RESULTS_STREAM, None))
        failure: Optional[BaseException] = None
        if others.streams:
            try:
                yield from super().read(logger, config, others, state)
            except AirbyteTracedException as error:  # still read stream_results, then fail the sync
                failure = error
        if results_state is not None:
            reader = ResultsReader(
                api_factory=lambda: self._api(self._config),
                streams=cm_streams,
                state=results_state,
                parallel_streams=int(self._config.get("parallel_streams", 4)),
                max_records=self._config.get("max_records_per_sync"),
                rewind_on_resume=bool(self._config.get("rewind_on_resume", True)),
                skip_uncommitted_on_refused_resume=bool(self._config.get("skip_uncommitted_on_refused_resume", False)),
                logger=logger,
            )
            yield from reader.read()
        if failure is not None:
            raise failure

