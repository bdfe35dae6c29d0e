"""Error helpers shared by config checks, `check` and the reader, and the token's masking.

`register_secret` teaches both our `mask` and the CDK's `filter_secrets` every form in which a
secret can reach the output: as given, JSON-escaped (the CDK's debug log writes `\\u00f6` for
`ö`), JSON-escaped twice (a log line inside a serialized message), URL-encoded, and as bytes
(`b'...\\xc3\\xb6...'` in an encoding error). Every message this package builds from something the
API or the HTTP stack said goes through `mask`.
"""

import json
from typing import List, Set
from urllib.parse import quote, quote_plus

from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.airbyte_secrets_utils import add_to_secrets, filter_secrets
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

MASK = "****"
_forms: Set[str] = set()
_ordered: List[str] = []  # longest first, so a form that contains another is replaced whole


def secret_forms(secret: str) -> Set[str]:
    """Every spelling of `secret` that output could carry."""
    forms = {secret}
    for ensure_ascii in (True, False):
        escaped = json.dumps(secret, ensure_ascii=ensure_ascii)[1:-1]
        forms.add(escaped)
        forms.add(json.dumps(escaped, ensure_ascii=ensure_ascii)[1:-1])
    for encode in (quote, quote_plus):
        encoded = encode(secret, safe="")
        forms.update((encoded, encoded.lower()))
    for encoding in ("utf-8", "latin-1"):
        try:
            forms.add(repr(secret.encode(encoding))[2:-1])
        except UnicodeEncodeError:
            pass
    return {form for form in forms if form}


def register_secret(secret: str) -> None:
    """Masks `secret` (all its forms) in `mask` and in the CDK's filter_secrets from now on."""
    if not isinstance(secret, str) or not secret:
        return
    global _ordered
    forms = secret_forms(secret)
    if forms - _forms:
        _forms.update(forms)
        _ordered = sorted(_forms, key=len, reverse=True)
    for form in forms:
        # The CDK's entrypoint replaces its list when it reads the config: add back what it lacks.
        if filter_secrets(form) == form:
            add_to_secrets(form)


def mask(text: str) -> str:
    """`text` with every registered secret form (and anything the CDK's registry holds) replaced."""
    if not text:
        return text
    for form in _ordered:
        if form in text:
            text = text.replace(form, MASK)
    return filter_secrets(text)


def config_error(message: str) -> AirbyteTracedException:
    message = mask(message)
    return AirbyteTracedException(message=message, internal_message=message, failure_type=FailureType.config_error)


def describe(error: BaseException) -> str:
    """A user-facing one-liner, masked: exception texts (e.g. a rejected header) may quote the token."""
    if isinstance(error, AirbyteTracedException):
        return mask(error.message or error.internal_message or type(error).__name__)
    return mask(f"{type(error).__name__}: {error}")
