"""masking.MaskedStream skips the mask for lines without the token's probe: that shortcut must never let a form through.

Every registered form of a token without capitals and of one with capitals (URL-encoded forms are
registered lower-cased too), written inside a record-sized line, must come out masked.
"""

import io

import pytest

from source_commsmining.errors import MASK, register_secret, secret_forms
from source_commsmining.masking import MaskedStream

TOKENS = ("lowercase.token-4711/abc", "MiXeD.Case+Token/Äb=9Qz")


@pytest.mark.parametrize("token", TOKENS)
def test_every_form_of_the_token_is_masked(token):
    register_secret(token)
    out = io.StringIO()
    stream = MaskedStream(out)
    padding = "x" * 2000
    for form in sorted(secret_forms(token)):
        out.seek(0)
        out.truncate()
        stream.write(f'{{"data": "{padding}{form}{padding}"}}\n')
        assert form not in out.getvalue(), form
        assert MASK in out.getvalue()


@pytest.mark.parametrize("token", TOKENS)
def test_lines_without_the_token_pass_unchanged(token):
    register_secret(token)
    out = io.StringIO()
    line = '{"type":"RECORD","record":{"data":{"subject":"Ölpreis ✓ 42"}}}\n'
    MaskedStream(out).write(line)
    assert out.getvalue() == line


# ------------------------------------------------------------------ the token in any case
import json  # noqa: E402
from urllib.parse import quote, quote_plus  # noqa: E402

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from source_commsmining.errors import mask  # noqa: E402

CASE_TOKENS = ("GOOD-TOKEN-4711-abcdef", "tökén-secret-77", "Straße-Öl-token-42")
SPELLINGS = {
    "plain": lambda t: t,
    "bearer header": lambda t: f"Authorization: BEARER {t}",
    "json": lambda t: json.dumps(t)[1:-1],
    "json twice": lambda t: json.dumps(json.dumps(t))[1:-1],
    "url": lambda t: quote(t, safe=""),
    "url plus": lambda t: quote_plus(t, safe=""),
    "repr bytes": lambda t: repr(t.encode())[2:-1],
}
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


def _in_case(token: str, cases: list) -> str:
    return "".join(char.upper() if upper else char.lower() for char, upper in zip(token, cases + [False] * len(token)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    token=st.sampled_from(CASE_TOKENS),
    cases=st.lists(st.booleans(), max_size=30),
    spelling=st.sampled_from(sorted(SPELLINGS)),
    before=_text,
    after=_text,
)
def test_the_token_in_any_case_and_spelling_is_masked_in_any_line(token, cases, spelling, before, after):
    register_secret(token)
    echoed = SPELLINGS[spelling](_in_case(token, cases))
    text = f"{before}{echoed}{after}"
    out = io.StringIO()
    MaskedStream(out).write(json.dumps({"type": "LOG", "log": {"level": "ERROR", "message": text}}, ensure_ascii=False) + "\n")
    for printed in (mask(text), out.getvalue()):
        assert echoed.casefold() not in printed.casefold(), printed
        assert token.casefold() not in printed.casefold(), printed


@pytest.mark.parametrize("token", CASE_TOKENS)
def test_an_upper_cased_echo_in_a_record_line_is_masked(token):
    register_secret(token)
    out = io.StringIO()
    MaskedStream(out).write(f'{{"type":"RECORD","record":{{"data":{{"text":"echo {token.upper()} {token.lower()}"}}}}}}\n')
    assert token.upper() not in out.getvalue() and token.lower() not in out.getvalue() and MASK in out.getvalue()
