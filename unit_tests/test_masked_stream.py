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
