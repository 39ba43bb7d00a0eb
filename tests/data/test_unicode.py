"""Unicode text (sandbox/data/normalize.py): every script's letters and digits, emoji, Slack shortcodes."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.data import load_corpus
from sandbox.data.__main__ import main
from sandbox.data.normalize import TOKEN, normalize_reaction, normalize_text, text_words
from sandbox.tasks.text import tokenize
from tests.data.test_io import JSONL_FILES, write_files


@pytest.mark.parametrize(
    "text, words",
    [
        ("Café com o João", ["café", "com", "o", "joão"]),  # Latin with accents, kept whole
        ("Cafe\u0301 NFD", ["café", "nfd"]),  # a combining accent is composed (NFKC)
        ("Привет, как дела?", ["привет", "как", "дела"]),  # Cyrillic
        ("今日は良い天気です", list("今日は良い天気です")),  # Japanese: one token per character
        ("Straße ＦＵＬＬ ﬁne", ["strasse", "full", "fine"]),  # case-folding, full width, ligature
        ("नमस्ते दुनिया", ["नमस्ते", "दुनिया"]),  # Devanagari with its vowel signs (marks)
        ("🎉🎉", ["🎉", "🎉"]),  # emoji only
        ("👍🏽 ok 🇺🇸 👨‍👩‍👧", ["👍🏽", "ok", "🇺🇸", "👨‍👩‍👧"]),  # skin tone, flag, ZWJ family: one token each
        (":tada: shipped :+1:", ["🎉", "shipped", "👍"]),  # Slack-style shortcodes as their emoji
        ("don't 10:30 a_b", ["don't", "10", "30", "a", "b"]),  # ASCII as before; 10:30 is no shortcode
        ("?!… — ...", []),  # punctuation only: no token
    ],
)
def test_words_of_every_script(text, words):
    assert text_words(text) == words


def test_unspaced_scripts_get_character_bigrams():
    assert tokenize("天気", bigrams=True) == ["天", "気", "天 気"]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=60))
def test_the_ascii_fast_path_is_the_unicode_tokenizer(text):
    """ASCII text without ':' takes ASCII_TOKEN on lower(); it must equal TOKEN on normalize_text, and both
    the earlier [a-z0-9']+ (the shipped corpora's tokens are unchanged)."""
    if ":" in text:
        text = text.replace(":", " ")
    assert text_words(text) == TOKEN.findall(normalize_text(text)) == re.findall(r"[a-z0-9']+", text.lower())


def test_shortcode_reactions_are_one_class_with_their_emoji(tmp_path):
    files = dict(JSONL_FILES)
    files["messages.jsonl"] = (
        files["messages.jsonl"]
        .replace('["🎉"', '[":tada:"')
        .replace('"reactions": ["👍", "🎉"]', '"reactions": [":+1:", ":tada:"]')
    )
    corpus = load_corpus(write_files(tmp_path / "c", files))
    assert corpus.reactions[1] == ("👍", "🎉")  # as if the emoji had been written
    assert normalize_reaction(":not_an_emoji_name:") == ":not_an_emoji_name:"  # unknown: kept as written


def test_validate_reports_the_messages_without_a_token(tmp_path, capsys):
    files = dict(JSONL_FILES)
    files["messages.jsonl"] = files["messages.jsonl"].replace('"text": "fire"', '"text": "!!!"')
    directory = write_files(tmp_path / "c", files)
    assert main(["validate", str(directory)]) == 0
    # m3 is empty and m4 only punctuation: 2 of 4 messages
    assert "4 messages (2 = 50.0% yield no token" in capsys.readouterr().out
