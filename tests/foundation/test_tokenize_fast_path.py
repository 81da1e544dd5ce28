"""`models.text.tokenize` encodes with a fixed-state copy of the fast tokenizer's Rust backend instead of
calling transformers' tokenizer (which re-configures the shared backend on every call). The ids must be
exactly what transformers gives, for any text, with and without truncation."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from helpers import minilm_dir
from jinaserve.errors import TokenLimitExceededError
from jinaserve.models.text import _plain_backend, tokenize


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(str(minilm_dir()))


def _reference(tok, texts, max_tokens, add_special_tokens=True):
    return tok(texts, add_special_tokens=add_special_tokens, truncation=True, max_length=max_tokens,
               padding=False)["input_ids"]


# Pieces: single characters (accents, CJK, emoji, control whitespace) and whole tokens, special ones too.
_PIECE = st.sampled_from(list("abcXYZ éü漢字🙂 \t\n.,!?'-0123456789")) | st.sampled_from(
    ["[SEP]", "[CLS]", "[MASK]", "[PAD]", " hello", " world", "un", "##able", "  "])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.lists(_PIECE, max_size=40).map("".join), min_size=1, max_size=5),
       max_tokens=st.sampled_from([4, 9, 32, 512]), add_special=st.booleans())
def test_same_ids_as_transformers(tok, texts, max_tokens, add_special):
    got = tokenize(tok, texts, max_tokens=max_tokens, truncate=True, add_special_tokens=add_special)
    assert got == _reference(tok, texts, max_tokens, add_special)


def test_over_length_without_truncate_names_the_input(tok):
    texts = ["short", "word " * 40]
    with pytest.raises(TokenLimitExceededError, match="index 7"):
        tokenize(tok, texts, max_tokens=16, truncate=False, indices=[3, 7])


def test_shared_backend_state_does_not_leak_in(tok):
    """Padding or truncation left on the shared backend (by transformers, or by a tokenizer.json that ships
    with them enabled) must not change the ids."""
    expected = _reference(tok, ["a b c", "a much longer sentence than the first"], 512)
    tok.backend_tokenizer.enable_padding(length=40)
    tok.backend_tokenizer.enable_truncation(3)
    try:
        assert tokenize(tok, ["a b c", "a much longer sentence than the first"], max_tokens=512,
                        truncate=True) == expected
    finally:
        tok.backend_tokenizer.no_padding()
        tok.backend_tokenizer.no_truncation()


def test_copy_is_refreshed_when_tokens_are_added():
    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    first = _plain_backend(tok)
    assert _plain_backend(tok) is first
    tok.add_tokens(["jinaservezzz"])
    assert _plain_backend(tok) is not first
    assert tokenize(tok, ["x jinaservezzz y"], max_tokens=512, truncate=True) == _reference(
        tok, ["x jinaservezzz y"], 512)


def test_tokenizers_without_a_rust_backend_use_their_own_call():
    class Plain:
        def __call__(self, texts, **kw):
            return {"input_ids": [[len(t)] for t in texts]}

    assert tokenize(Plain(), ["abc", "de"], max_tokens=8, truncate=True) == [[3], [2]]
