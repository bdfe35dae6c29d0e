"""Error helpers shared by config checks, `check` and the reader, and the token's masking.

`register_secret` teaches both our `mask` and the CDK's `filter_secrets` every form in which a
secret can reach the output: as given, JSON-escaped (the CDK's debug log writes `\\u00f6` for
`ö`), JSON-escaped twice (a log line inside a serialized message), URL-encoded, and as bytes
(`b'...\\xc3\\xb6...'` in an encoding error), Python-repr-escaped (`--debug` prints header dicts),
each of those of the secret as given, upper-cased and lower-cased. A server may also echo a token
cut short or split by a line break: every run of `FRAGMENT` characters of the secret is masked too.
Every form and fragment is matched whatever its case (a server that upper-cases its message, or
title-cases it, echoes `BEARER GOOD-TOKEN`): mask compares case-folded texts (`_fold`). Still
unmasked: pieces shorter than FRAGMENT, and re-encodings of pieces (base64 of a part, say), which
no fixed list of forms can cover.

A secret shorter than MIN_SECRET_LENGTH is not registered (config.validate_token refuses it as a
token): masking "a" would mask every "a" of every line. And a masked form never replaces the
Airbyte protocol's own words where they stand as JSON strings (`"type"`, `"stream"`, a stream's
name...): a token that happens to be such a word must not break every message.
"""

import itertools
import json
import re
from typing import List, Optional, Set, Tuple
from urllib.parse import quote, quote_plus

from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.airbyte_secrets_utils import add_to_secrets, filter_secrets
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

MASK = "****"
MIN_SECRET_LENGTH = 10
FRAGMENT = 16  # any run of this many characters of a secret (fewer for a short one) is masked
_PROBE = 6  # the length of the pieces a line is probed for before it is scanned (see probes)
_forms: Set[str] = set()
_ordered: List[str] = []  # longest first, so a form that contains another is replaced whole
_fragments: Set[str] = set()
_fragile: Set[str] = set()  # forms that are part of a protocol word: replaced only outside those words
_probes: Set[str] = set()
_record_probes: Set[str] = set()

# The words of the Airbyte protocol and of this connector's stream names, as JSON strings in a message.
PROTOCOL_WORDS = (
    "type", "record", "stream", "data", "emitted_at", "namespace", "state", "stream_state", "stream_descriptor",
    "shared_state", "global", "stream_states", "name", "sourceStats", "destinationStats", "recordCount", "log",
    "level", "message", "trace", "error", "internal_message", "stack_trace", "failure_type", "stream_status",
    "status", "reason", "estimate", "control", "connectionStatus", "catalog", "spec", "connectionSpecification",
    "RECORD", "STATE", "LOG", "TRACE", "SPEC", "CATALOG", "CONNECTION_STATUS", "CONTROL", "STREAM", "GLOBAL",
    "LEGACY", "ERROR", "WARN", "INFO", "DEBUG", "FATAL", "STREAM_STATUS", "ESTIMATE", "RUNNING", "STARTED",
    "COMPLETE", "INCOMPLETE", "SUCCEEDED", "FAILED", "config_error", "system_error", "transient_error",
    "sources", "datasets", "streams", "label_defs", "comments", "stream_results", "partition", "cursor", "states",
)
_PROTECTED = re.compile('("(?:' + "|".join(map(re.escape, sorted(PROTOCOL_WORDS, key=len, reverse=True))) + ')")')


def _fold(text: str) -> str:
    """`text` case-folded character by character, as long as `text`: a match in it is a match, whatever the case, in `text`.

    A character whose folding is longer (`ß` -> `ss`) stays as it is; its upper-cased echo (`SS`)
    is caught by the forms of the upper-cased secret (secret_forms)."""
    folded = text.casefold()
    if len(folded) == len(text):
        return folded  # casefold maps character by character: no character grew, so none changed length
    return "".join(char if len(char.casefold()) != 1 else char.casefold() for char in text)


def secret_forms(secret: str) -> Set[str]:
    """Every spelling of `secret` that output could carry, of each of its case variants (_case_variants)."""
    forms: Set[str] = set()
    for variant in _case_variants(secret):
        forms.update(_spellings(variant))
    return {form for form in forms if form}


_MAX_CASED = 4  # non-ASCII letters whose cases are combined (2 ** 4 variants at most)


def _case_variants(secret: str) -> Set[str]:
    """The secret as given, upper- and lower-cased, and with each combination of cases of its non-ASCII letters.

    mask folds the case of what it reads, which covers any case of the plain spelling and of the
    ASCII letters of an escaped one; but an escaped non-ASCII letter (`\\u00f6`, `%C3%B6`) spells its
    case in digits: an echo in mixed case is caught by the spellings of these variants. A secret with
    more than _MAX_CASED such letters gets the first three variants only."""
    variants = {secret, secret.upper(), secret.lower()}
    cased = [index for index, char in enumerate(secret) if not char.isascii() and char.lower() != char.upper()]
    if len(cased) <= _MAX_CASED:
        for cases in itertools.product((str.lower, str.upper), repeat=len(cased)):
            chars = list(secret.lower())
            for index, case in zip(cased, cases):
                chars[index] = case(secret[index])
            variants.add("".join(chars))
    return variants


def _spellings(secret: str) -> Set[str]:
    forms = {secret, repr(secret)[1:-1]}
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
    return forms


def secret_fragments(secret: str) -> Set[str]:
    """Every run of FRAGMENT characters of `secret` (of len - 2 for a shorter one): an echo cut short or split."""
    size = min(FRAGMENT, len(secret) - 2)
    if len(secret) < MIN_SECRET_LENGTH or size >= len(secret):
        return set()
    return {secret[start : start + size] for start in range(len(secret) - size + 1)}


def _folded_fragments(secret: str) -> Set[str]:
    """The fragments of the secret and of its upper-cased spelling (longer where a letter is: `ß` -> `SS`), folded."""
    return {_fold(fragment) for variant in (secret, secret.upper()) for fragment in secret_fragments(variant)}


def _probe_pieces(secret: str, forms: Set[str]) -> Set[str]:
    """Pieces such that any line holding a form or a fragment of `secret` holds one of them.

    Every fragment of `size` characters holds one of the _PROBE-long pieces taken every
    size - _PROBE + 1 characters. A secret of only the characters that JSON, repr and URL encoding
    leave as they are has those pieces in every form (lowercased in one: the first piece lowercased
    covers it); another needs its longest such run too, as is and lowercased.
    """
    size = min(FRAGMENT, len(secret) - 2)
    step = max(1, size - _PROBE + 1)
    pieces = {secret[start : start + _PROBE] for start in range(0, len(secret) - _PROBE + 1, step)}
    pieces.add(secret[:_PROBE].lower())
    if _PLAIN.fullmatch(secret):
        return pieces
    longest = max(_PLAIN.findall(secret), key=len, default="")
    if len(longest) < _PROBE:
        return set(forms)  # no cheap probe: the forms themselves
    return pieces | {longest, longest.lower()}


_PLAIN = re.compile(r"[A-Za-z0-9._~-]+")


def _full_form_probes(secret: str, forms: Set[str]) -> Set[str]:
    """The secret's longest run of characters no encoding changes, as is, lower- and upper-cased: in every form
    but one in mixed case (a RECORD line is a comment the API stored, not an echo: see PROBES)."""
    longest = max(_PLAIN.findall(secret), key=len, default="")
    return {longest, longest.lower(), longest.upper()} if len(longest) >= _PROBE else set(forms)


def _folded_probes(secret: str) -> Set[str]:
    """Probes of the secret as given and upper-cased, case-folded: one of them is in the folded text of any line
    that holds a form or fragment of the secret, in any case. casefold maps each character on its own, so a piece
    of a line, folded, is a piece of the line folded."""
    probes: Set[str] = set()
    for variant in _case_variants(secret):
        probes.update(probe.casefold() for probe in _probe_pieces(variant, _spellings(variant)))
    return probes


def register_secret(secret: str) -> None:
    """Masks `secret` (all its forms and fragments) in `mask`, and its forms in the CDK's filter_secrets, from now on."""
    if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
        return
    global _ordered
    forms = secret_forms(secret)
    folded_forms = {_fold(form) for form in forms}
    fragments = _folded_fragments(secret) - folded_forms
    if forms - _forms or fragments - _fragments:
        _forms.update(forms)
        _fragments.update(fragments)
        _ordered = sorted({_fold(form) for form in _forms}, key=len, reverse=True)
        _fragile.update(form for form in folded_forms | fragments if any(form in _fold(word) for word in PROTOCOL_WORDS))
        _probes.update(_folded_probes(secret))
        _record_probes.update(_full_form_probes(secret, forms))
        global PROBES, RECORD_PROBES
        PROBES = tuple(sorted(_probes, key=len, reverse=True))
        RECORD_PROBES = tuple(sorted(_record_probes, key=len, reverse=True))
    for form in forms:
        # The CDK's entrypoint replaces its list when it reads the config: add back what it lacks. A fragile
        # form stays out of it: the CDK's filter would replace it inside the protocol's words.
        if _fold(form) not in _fragile and filter_secrets(form) == form:
            add_to_secrets(form)


# Pieces of the registered secrets: a line whose case-folded text holds none of PROBES (folded)
# holds no masked form or fragment in any case (mask_line, used by masking.MaskedStream). A RECORD line is probed for the full
# forms only, as is, lower- and upper-cased, without folding the line (RECORD_PROBES: three long
# probes): records come from 2xx bodies the API built from comments, while an echo of a token cut
# short or in another case comes in an error, which is printed in a LOG or TRACE line. Probing every
# record for fragments would cost ~5x the pre-check per line, and folding each record line ~1 us
# (ASCII) to ~14 us (not ASCII) per record.
PROBES: Tuple[str, ...] = ()
RECORD_PROBES: Tuple[str, ...] = ()


def mask_line(text: str) -> str:
    """One line for stdout or stderr, masked (masking.MaskedStream): through mask if a probe is in it, else as it is.
    With no probe (no token registered) only the CDK's own registry is applied."""
    if text.startswith('{"type":"RECORD"'):
        for probe in RECORD_PROBES:  # a loop, not any(): this runs for every record
            if probe in text:
                return mask(text)
        return text if PROBES else filter_secrets(text)
    if not PROBES:
        return filter_secrets(text)
    folded = text.casefold()
    for probe in PROBES:
        if probe in folded:
            return mask(text)
    return text


def is_plausible_secret(secret: object) -> bool:
    return isinstance(secret, str) and len(secret) >= MIN_SECRET_LENGTH and not any(secret in word for word in PROTOCOL_WORDS)


def mask(text: str) -> str:
    """`text` with every registered secret form and fragment, in any case (and anything the CDK's registry holds), replaced."""
    if not text:
        return text
    if _ordered or _fragments:
        text = _mask_spans(text)
    return filter_secrets(text)


def _mask_spans(text: str) -> str:
    """Replaces each stretch of overlapping forms and fragments with one MASK: a token cut short is masked whole.
    Found in the folded text, which is as long as `text`: a span there is the same span in `text`."""
    folded = _fold(text)
    spans = []
    for pieces in (_ordered, _fragments):
        for fragment in pieces:
            start = folded.find(fragment)
            while start != -1:
                spans.append((start, start + len(fragment), fragment))
                start = folded.find(fragment, start + 1)
    if not spans:
        return text
    protected = [match.span() for match in _PROTECTED.finditer(text)] if _fragile else []
    merged: List[List[int]] = []
    for start, end, fragment in sorted(spans):
        if fragment in _fragile and any(a <= start and end <= b for a, b in protected):
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    for start, end in reversed(merged):
        text = text[:start] + MASK + text[end:]
    return text


def config_error(message: str) -> AirbyteTracedException:
    message = mask(message)
    return AirbyteTracedException(message=message, internal_message=message, failure_type=FailureType.config_error)


def describe(error: BaseException) -> str:
    """A user-facing one-liner, masked: exception texts (e.g. a rejected header) may quote the token."""
    if isinstance(error, AirbyteTracedException):
        return mask(error.message or error.internal_message or type(error).__name__)
    return mask(f"{type(error).__name__}: {error}")
