"""Every custom class the manifest names (`source_commsmining.components.X`), each where its job lives."""

from source_commsmining.auth import AddDefaultTokenUrl, SharedTokenOAuthAuthenticator
from source_commsmining.comments_state import CommentsStateCheck
from source_commsmining.components.comments import CommentsExtractor
from source_commsmining.components.label_defs import LabelDefsExtractor
from source_commsmining.components.results import ResultFieldsExtractor, ResultLabelsExtractor, ResultsExtractor
from source_commsmining.deadline_requester import DeadlineHttpRequester
from source_commsmining.history import DatasetCommentLabelsExtractor, DatasetCommentsExtractor, ExportContinuation
from source_commsmining.model_versions import ModelVersionPartitions, ValidationColumns
from source_commsmining.thresholds import StreamThresholdsExtractor
from source_commsmining.transport import DeadlineBearerAuthenticator, RetryAfter, TransportAwareErrorHandler

__all__ = [
    "AddDefaultTokenUrl",
    "CommentsExtractor",
    "CommentsStateCheck",
    "DatasetCommentLabelsExtractor",
    "DatasetCommentsExtractor",
    "DeadlineBearerAuthenticator",
    "DeadlineHttpRequester",
    "ExportContinuation",
    "LabelDefsExtractor",
    "ModelVersionPartitions",
    "ResultFieldsExtractor",
    "ResultLabelsExtractor",
    "ResultsExtractor",
    "RetryAfter",
    "SharedTokenOAuthAuthenticator",
    "StreamThresholdsExtractor",
    "TransportAwareErrorHandler",
    "ValidationColumns",
]
