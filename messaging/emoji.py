"""What a reaction may be: a short name (":thumbsup:" style, without the colons) or one emoji grapheme.

Python's standard library has no grapheme segmentation, so one emoji is recognised by its structure
(Unicode TR51): a base emoji, then only what attaches to it (variation selector, skin-tone modifier,
keycap, tag sequence) and zero-width-joined further emoji; or a pair of regional indicators (a flag); or a
keycap sequence (digit, #, * + U+FE0F + U+20E3). Anything else (text, two emoji side by side, control or
invisible characters alone) is refused: a reaction is one symbol everyone sees the same way.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from core.domain import InvalidInput

SHORT_NAME_RE = re.compile(r"^(?=.*[a-z0-9])[a-z0-9_+\-]{1,32}$")
MAX_EMOJI_CODE_POINTS = 16

ZWJ = "\u200d"
VARIATION_SELECTORS = {"\ufe0e", "\ufe0f"}
KEYCAP = "\u20e3"
SKIN_TONES = {chr(c) for c in range(0x1F3FB, 0x1F400)}
TAGS = {chr(c) for c in range(0xE0020, 0xE0080)}
REGIONAL_INDICATORS = {chr(c) for c in range(0x1F1E6, 0x1F200)}


def _is_base(char: str) -> bool:
    if char in REGIONAL_INDICATORS or char in SKIN_TONES:
        return False
    return unicodedata.category(char) == "So" or char in {"\u00a9", "\u00ae", "\u203c", "\u2049", "\u2122"}


def is_one_emoji(text: str) -> bool:
    if not text or len(text) > MAX_EMOJI_CODE_POINTS:
        return False
    if len(text) == 2 and all(c in REGIONAL_INDICATORS for c in text):
        return True  # a flag
    if text[0] in "0123456789#*":
        return text[1:] in (KEYCAP, "\ufe0f" + KEYCAP)
    expect_base = True
    for char in text:
        if expect_base:
            if not _is_base(char):
                return False
            expect_base = False
        elif char == ZWJ:
            expect_base = True
        elif char in VARIATION_SELECTORS or char in SKIN_TONES or char == KEYCAP:
            continue
        elif char in TAGS:
            if not text.endswith("\U000e007f"):  # a tag sequence ends with CANCEL TAG
                return False
        else:
            return False
    return not expect_base


def clean_emoji(value: Any) -> str:
    """The reaction key as stored and sent: NFC-normalised, so one emoji is one key however it was typed."""
    if not isinstance(value, str):
        raise InvalidInput(fields={"emoji": ["Must be a string."]})
    emoji = unicodedata.normalize("NFC", value)
    if SHORT_NAME_RE.fullmatch(emoji) or is_one_emoji(emoji):
        return emoji
    raise InvalidInput(fields={"emoji": ["A reaction is one emoji or a short name (a-z, 0-9, _ + -, up to 32)."]})
