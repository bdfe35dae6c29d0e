"""Custom components the manifest names: the `/results` record extractors, the label_defs extractor and `parent`."""

import re
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Mapping, MutableMapping, Optional
from urllib.parse import unquote, urlsplit

import requests
from airbyte_cdk.sources.declarative.extractors.record_extractor import RecordExtractor
from airbyte_cdk.sources.declarative.transformations import RecordTransformation
from airbyte_cdk.sources.types import StreamSlice

from source_commsmining.envelope import decode
from source_commsmining.flat_tables import FIELDS, LABELS, flat_rows
from source_commsmining.records import build_records
from source_commsmining.taxonomies import label_parent

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
class LabelDefsExtractor(RecordExtractor):
    """Every label definition of a dataset, each with its `label_group`.

    A dataset's labels sit in `label_groups[].label_defs` (one group per taxonomy); the top-level
    `label_defs` are the default group's. A DpathExtractor cannot carry the group's name into its
    labels, hence this extractor. A top-level label no group lists (a server without groups) is
    emitted under the group `default`. A name is unique only within its group, so the group is
    part of the stream's key.
    """

    def extract_records(self, response: requests.Response) -> Iterable[MutableMapping[Any, Any]]:
        dataset = decode(response, required=("dataset",))["dataset"]
        seen = set()
        for group in dataset.get("label_groups") or []:
            for label_def in group.get("label_defs") or []:
                seen.add((group.get("name"), label_def.get("name")))
                yield {**label_def, "label_group": group.get("name")}
        for label_def in dataset.get("label_defs") or []:
            if (DEFAULT_LABEL_GROUP, label_def.get("name")) not in seen:
                yield {**label_def, "label_group": DEFAULT_LABEL_GROUP}


DEFAULT_LABEL_GROUP = "default"


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


@dataclass
class LabelParent(RecordTransformation):
    """Adds a label definition's `parent`: its name without the last ` > ` level, or null at the top level.

    Not an AddFields template: the CDK reads a rendered value as a Python literal, so a parent
    named "2024" would become a number, and typed as a string a null parent would become "None".
    """

    def transform(
        self,
        record: Dict[str, Any],
        config: Optional[Mapping[str, Any]] = None,
        stream_state: Optional[Mapping[str, Any]] = None,
        stream_slice: Optional[StreamSlice] = None,
    ) -> None:
        name = record.get("name")
        record["parent"] = label_parent(name) if isinstance(name, str) else None
