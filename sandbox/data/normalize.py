"""Unicode text as the models read it: NFKC, case-folded, Slack-style shortcodes as emoji.

* ``normalize_text``: NFKC (compatibility forms: full-width letters, ligatures, superscript digits
  become their plain forms), then ``str.casefold`` (caseless matching of every script: "Straße" and
  "STRASSE" read alike), then ``:shortcode:`` → emoji (the ``emoji`` package's alias table: GitHub
  and Slack names such as ``:tada:`` and ``:+1:``). Plain ASCII text is unchanged except for case.
* ``text_words``: the tokenizer's words (``TOKEN``): letters (with their combining marks), digits and
  apostrophes of every script; one token per character in scripts written without spaces (Han, kana,
  Thai, …), whose pairs the bigrams then give; an emoji (with skin tone, variation selector and ZWJ
  sequence) or a flag as one token. On ASCII text it is exactly the earlier ``[a-z0-9']+`` of the
  lower-cased text, the shipped corpora's tokens are unchanged (a test checks both).
* ``normalize_reaction``: a reaction written as a shortcode (``:tada:``) becomes its emoji (🎉), so a
  corpus that mixes the two has one class per emoji; an unknown shortcode stays as written.
"""

from __future__ import annotations

import functools
import re
import unicodedata

import emoji
import regex

# Recorded with every model (record model.tokenizer) and checked when one is loaded: change it with
# any change to what text_words returns
TOKENIZER = "sandbox-unicode-1 (NFKC, casefold, shortcodes as emoji; letters, marks, digits, emoji)"


def shortcodes_to_emoji(text: str) -> str:
    """``:name:`` → its emoji where the ``emoji`` package knows the name (``language="alias"``)."""
    return emoji.emojize(text, language="alias") if ":" in text else text


def normalize_text(text: str) -> str:
    """NFKC, case-folded, shortcodes as emoji (module docstring)."""
    if text.isascii():  # NFKC leaves ASCII as it is
        return shortcodes_to_emoji(text.lower())
    return shortcodes_to_emoji(unicodedata.normalize("NFKC", text).casefold())


@functools.lru_cache(maxsize=4096)
def normalize_reaction(reaction: str) -> str:
    """A reaction label: its emoji for a known ``:shortcode:``, else NFC of what was written."""
    if reaction.startswith(":") and reaction.endswith(":") and len(reaction) > 2:
        return shortcodes_to_emoji(reaction)
    return reaction if reaction.isascii() else unicodedata.normalize("NFC", reaction)


ASCII_TOKEN = re.compile(r"[a-z0-9']+")  # TOKEN on lower-cased ASCII text without a shortcode
# Scripts written without spaces between words: each character is a token (its pairs are the bigrams)
UNSPACED = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}"
# A token: one character of an unspaced script; an emoji with its modifiers, variation selector and ZWJ
# sequence (or a flag: two regional indicators); or a run of letters (with their combining marks),
# digits and apostrophes of any other script. On ASCII text this is exactly the earlier [a-z0-9']+.
TOKEN = regex.compile(
    rf"[{UNSPACED}]"
    r"|\p{Extended_Pictographic}(?:[\p{Emoji_Modifier}\uFE0F]|\u200D\p{Extended_Pictographic})*"
    r"|\p{Regional_Indicator}{2}"
    rf"|(?:(?![{UNSPACED}])[\p{{L}}\p{{M}}\p{{N}}'])+"
)


def text_words(text: str) -> list[str]:
    """The words of one message (``TOKEN`` on ``normalize_text(text)``)."""
    if text.isascii() and ":" not in text:  # the fast path, equal to TOKEN's on such text (a test checks)
        return ASCII_TOKEN.findall(text.lower())
    return TOKEN.findall(normalize_text(text))
