"""The comments extractor: the comments of an export page, each with its thread properties."""

from dataclasses import dataclass
from typing import Any, Iterable, MutableMapping

import requests
from airbyte_cdk.sources.declarative.extractors.record_extractor import RecordExtractor

from source_commsmining.envelope import decode


@dataclass
class CommentsExtractor(RecordExtractor):
    """The comments of an export page, each with its `thread_properties`.

    The export sends thread properties (asked for with `include_thread_properties`) as a list
    beside `comments`, one entry per comment in the same order; a DpathExtractor cannot pair
    them. A page without that list (or with one of another length) leaves the field out.
    """

    def extract_records(self, response: requests.Response) -> Iterable[MutableMapping[Any, Any]]:
        body = decode(response, required=("comments",))
        comments = body.get("comments") or []
        threads = body.get("thread_properties")
        if not isinstance(threads, list) or len(threads) != len(comments):
            yield from comments
            return
        for comment, thread in zip(comments, threads):
            if isinstance(comment, dict):
                comment["thread_properties"] = thread
            yield comment

