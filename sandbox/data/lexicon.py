"""Words of the synthetic corpus, all taken from the `emoji` package's CLDR names.

Reaction emoji are a fixed, curated list of popular reaction characters (ordered by
rough popularity, which sets their Zipf rank); their keywords are the tokens of their
English names and aliases in `emoji.EMOJI_DATA`, minus stopwords. Topic vocabulary is
every other token of every fully-qualified emoji name (about 1,600 words).
"""

from __future__ import annotations

import re
from functools import cache

import emoji

# Popular reaction emoji, most popular first. Characters are the fully-qualified keys of
# emoji.EMOJI_DATA (e.g. "❤️" carries U+FE0F).
REACTION_EMOJI: tuple[str, ...] = (
    "👍",
    "❤️",
    "😂",
    "🎉",
    "🙏",
    "🔥",
    "👀",
    "✅",
    "😍",
    "🚀",
    "💯",
    "👏",
    "😢",
    "😮",
    "🤔",
    "😄",
    "🙌",
    "💪",
    "👌",
    "➕",
    "😊",
    "🤣",
    "😭",
    "😅",
    "🥳",
    "☕",
    "🍕",
    "🐛",
    "⚠️",
    "❌",
    "💡",
    "📌",
    "🎂",
    "🤝",
    "😎",
    "🙈",
    "👋",
    "🫡",
    "😬",
    "🤦",
    "🤷",
    "💀",
    "😡",
    "🤯",
    "🍻",
    "🏆",
    "🎯",
    "📈",
    "🐐",
    "🤞",
    "✨",
    "⭐",
    "💬",
    "📝",
    "🥲",
    "😁",
    "🙂",
    "👆",
    "✔️",
    "🆗",
)

# Everyday chat words: neutral filler in messages, never a keyword of any emoji.
FILLER_WORDS: tuple[str, ...] = (
    "the",
    "a",
    "an",
    "and",
    "or",
    "but",
    "so",
    "just",
    "we",
    "i",
    "you",
    "they",
    "it",
    "this",
    "that",
    "is",
    "are",
    "was",
    "be",
    "will",
    "can",
    "to",
    "for",
    "on",
    "at",
    "in",
    "of",
    "with",
    "about",
    "today",
    "now",
    "later",
    "please",
    "anyone",
    "team",
    "here",
    "there",
    "again",
    "still",
    "maybe",
    "also",
    "what",
    "when",
    "how",
    "our",
    "my",
    "your",
    "new",
    "update",
    "quick",
    "question",
)

# Name tokens too generic to signal one emoji.
_NAME_STOPWORDS = frozenset(
    {
        "face",
        "button",
        "mark",
        "sign",
        "hand",
        "hands",
        "person",
        "with",
        "of",
        "the",
        "and",
        "in",
        "on",
        "skin",
        "tone",
        "medium",
        "light",
        "dark",
    }
)
_TOKEN_SPLIT = re.compile(r"[_\-\s]+")


def _name_tokens(name: str) -> list[str]:
    tokens = _TOKEN_SPLIT.split(name.strip(":").lower())
    return [t for t in tokens if t.isascii() and t.isalpha() and len(t) >= 2]


def _is_stopword(token: str) -> bool:
    return token in _NAME_STOPWORDS or token in FILLER_WORDS


@cache
def emoji_keywords(character: str) -> tuple[str, ...]:
    """Keywords of one emoji: tokens of its English name, then of its aliases, deduplicated."""
    entry = emoji.EMOJI_DATA[character]
    names = [entry["en"], *entry.get("alias", [])]
    keywords: list[str] = []
    for name in names:
        for token in _name_tokens(name):
            if not _is_stopword(token) and token not in keywords:
                keywords.append(token)
    if not keywords:
        raise ValueError(f"emoji {character!r} ({entry['en']}) has no keywords")
    return tuple(keywords)


@cache
def topic_vocabulary() -> tuple[str, ...]:
    """Sorted tokens of all fully-qualified emoji names, minus stopwords and reaction keywords."""
    reserved = {k for character in REACTION_EMOJI for k in emoji_keywords(character)}
    fully_qualified = emoji.STATUS["fully_qualified"]
    words = {
        token
        for entry in emoji.EMOJI_DATA.values()
        if entry.get("status") == fully_qualified
        for token in _name_tokens(entry["en"])
    }
    return tuple(sorted(w for w in words if len(w) >= 3 and not _is_stopword(w) and w not in reserved))
