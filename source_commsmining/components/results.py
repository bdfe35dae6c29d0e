"""The `/results` record extractors of the declarative peek: `stream_results` and its flat tables, built as a sync builds them."""

import re
from dataclasses import dataclass
from typing import Any, Iterable, MutableMapping
from urllib.parse import unquote, urlsplit

import requests
from airbyte_cdk.sources.declarative.extractors.record_extractor import RecordExtractor

from source_commsmining.envelope import decode
from source_commsmining.flat_tables import FIELDS, LABELS, flat_rows
from source_commsmining.records import build_records

_RESULTS_PATH = re.compile(r"/datasets/(?P<project>[^/]+)/(?P<dataset>[^/]+)/streams/(?P<stream>[^/]+)/results$")


@dataclass
class ResultsExtractor(RecordExtractor):
    """Builds `stream_results` records from a `/results` page (used by the declarative peek).

    The CM stream a record came from is read off the request path, which the manifest's
    `results_requester` builds from the partition. A peek does not read the stream definition,
    so its records have no `model_version`; a sync's do.
    """

    def extract_records(self, response: requests.Response) -> Iterable[MutableMapping[Any, Any]]:
        body = decode(response, required=("results", "continuation"))
        match = _RESULTS_PATH.search(urlsplit(response.request.url).path)
        if match is None:
            raise ValueError(f"not a /results URL: {urlsplit(response.request.url).path}")
        names = {key: unquote(value) for key, value in match.groupdict().items()}
        yield from build_records(body, names["project"], names["dataset"], names["stream"])


@dataclass
class ResultLabelsExtractor(ResultsExtractor):
    """`stream_result_labels` rows of a `/results` page (the declarative peek), built as a sync builds them."""

    table = LABELS

    def extract_records(self, response: requests.Response) -> Iterable[MutableMapping[Any, Any]]:
        for record in super().extract_records(response):
            yield from flat_rows(record, (self.table,))[0][self.table]


@dataclass
class ResultFieldsExtractor(ResultLabelsExtractor):
    """`stream_result_fields` rows of a `/results` page (the declarative peek)."""

    table = FIELDS
