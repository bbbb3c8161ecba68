"""When two user names look alike: the skeleton that usernames and nicknames are compared by.

Nicknames are shown instead of usernames, so a nickname must not pass for somebody else: "ALICE",
"Alice " and "Аlice" (Cyrillic А) all look like the user alice. Two names look alike when their skeletons
are equal. The skeleton, in the spirit of Unicode's UTS #39 (kept small and explicit here):

1. NFKC: compatibility forms fold (fullwidth "ａ", "ℓ", mathematical letters, ligatures, superscripts).
2. Invisible characters go: whitespace, format characters (zero-width space and joiners, bidi marks, the
   soft hyphen), control characters, variation selectors and the Hangul fillers.
3. Accents on Latin, Greek and Cyrillic letters go ("Alicé" looks like "Alice"); marks of other scripts
   stay, since there they change the letter (Japanese dakuten, Indic vowel signs).
4. Letters that look like a Latin letter become it (Cyrillic, Greek and Cherokee look-alikes, Latin
   letters with a stroke, a few Armenian and IPA letters), case-sensitively: Greek "Ν" looks like "N",
   "ν" like "v".
5. Case folds; then "1", "I", "i", "|" all read as "l" and "0" as "o", "m" as "rn" and "w" as "vv" (the
   pairs that fonts make hard to tell apart).

The price is a few false alarms ("ian" and "lan" look alike), which only make a newcomer pick another
name; an impersonation that passes costs far more.
"""

from __future__ import annotations

import unicodedata

SKELETON_MAX_LENGTH = 255

# Step 2: invisible, beyond what the categories below catch (these are marks or letters by category).
_INVISIBLE = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u2800\u3164\uffa0"
    + "".join(chr(c) for c in range(0xFE00, 0xFE10))
    + "".join(chr(c) for c in range(0xE0100, 0xE01F0))
)
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
_ACCENTED_SCRIPTS = ("LATIN", "GREEK", "CYRILLIC")

# Step 4: look-alikes of Latin letters (after NFKC, so no compatibility forms are needed here).
# fmt: off
_LOOK_ALIKES = {
    # Cyrillic capitals and small letters
    "А": "a", "В": "b", "С": "c", "Е": "e", "Н": "h", "І": "i", "Ј": "j", "К": "k", "М": "m", "О": "o",
    "Р": "p", "Ѕ": "s", "Т": "t", "Х": "x", "У": "y", "Ү": "y", "Ԁ": "d", "Ԛ": "q", "Ԝ": "w", "Һ": "h",
    "Ӏ": "l", "а": "a", "с": "c", "ԁ": "d", "е": "e", "һ": "h", "і": "i", "ј": "j", "к": "k", "ӏ": "l",
    "о": "o", "р": "p", "ԛ": "q", "ѕ": "s", "у": "y", "ү": "y", "ԝ": "w", "х": "x", "г": "r", "п": "n",
    # Greek capitals and small letters
    "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n", "Ο": "o",
    "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x", "Ϲ": "c", "Ϳ": "j", "α": "a", "ι": "i", "κ": "k", "ν": "v",
    "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ϲ": "c", "ϳ": "j", "γ": "y",
    # Latin letters with a stroke or of other alphabets (no decomposition takes their mark off)
    "Ł": "l", "ł": "l", "Ø": "o", "ø": "o", "Đ": "d", "đ": "d", "Ħ": "h", "ħ": "h", "ı": "i", "ȷ": "j",
    "ĸ": "k", "Ŧ": "t", "ŧ": "t", "ƀ": "b", "ɨ": "i", "ʉ": "u", "ɑ": "a", "ɡ": "g", "ɩ": "i", "ǀ": "l",
    "ɪ": "i", "ʟ": "l", "ɴ": "n", "ʀ": "r", "ᴏ": "o", "ꓲ": "l",
    # Armenian
    "օ": "o", "ս": "u", "ց": "g", "հ": "h", "ո": "n", "Տ": "s", "Օ": "o",
    # Cherokee capitals (case folding turns the small letters into these: the table is applied again)
    "Ꭺ": "a", "Ᏼ": "b", "Ꮯ": "c", "Ꭰ": "d", "Ꭼ": "e", "Ꮐ": "g", "Ꮋ": "h", "Ꭻ": "j", "Ꮶ": "k", "Ꮮ": "l",
    "Ꮇ": "m", "Ꮲ": "p", "Ꮪ": "s", "Ꭲ": "t", "Ꮩ": "v", "Ꮃ": "w", "Ꮓ": "z",
}
# fmt: on
_LOOK_ALIKE_TABLE = str.maketrans(_LOOK_ALIKES)
_READ_ALIKE_TABLE = str.maketrans({"1": "l", "i": "l", "|": "l", "0": "o"})
# Step 5, after case folding (the table above): sequences that read as one letter.
_SEQUENCES = (("m", "rn"), ("w", "vv"))


def _without_invisible(text: str) -> str:
    return "".join(
        ch
        for ch in text
        if ch not in _INVISIBLE and unicodedata.category(ch) not in _INVISIBLE_CATEGORIES and not ch.isspace()
    )


def _without_accents_on_lookalike_scripts(text: str) -> str:
    kept: list[str] = []
    base_script = ""
    for ch in unicodedata.normalize("NFD", text):
        if unicodedata.category(ch) in ("Mn", "Me"):
            if base_script:
                continue
        else:
            name = unicodedata.name(ch, "")
            base_script = "LATIN" if ch.isascii() else next((s for s in _ACCENTED_SCRIPTS if name.startswith(s)), "")
        kept.append(ch)
    return unicodedata.normalize("NFC", "".join(kept))


def name_skeleton(name: str) -> str:
    """The form two names are compared in: equal skeletons look alike. "" for a name with nothing visible."""
    text = unicodedata.normalize("NFKC", name)
    text = _without_invisible(text)
    text = _without_accents_on_lookalike_scripts(text)
    text = text.translate(_LOOK_ALIKE_TABLE)
    text = unicodedata.normalize("NFKC", text.casefold()).translate(_LOOK_ALIKE_TABLE).translate(_READ_ALIKE_TABLE)
    for single, pair in _SEQUENCES:
        text = text.replace(single, pair)
    return text[:SKELETON_MAX_LENGTH]
