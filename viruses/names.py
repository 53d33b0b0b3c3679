"""Player names: what a name may hold, and the key no two players' names may share.

A name is what every other player reads on the board and in the feed, so it must be
visible, fit a phone's row, read as nobody else's name and not as the page's own words.
Unicode's security mechanisms (UTS #39, through ICU's SpoofChecker) decide what looks alike
and which scripts may mix; the rest is the Unicode character database.
"""

import unicodedata

import icu

from .models import Player

# Shown in one row of the board on a phone: East Asian wide and fullwidth characters take
# two columns, so 12 of them fill it as 24 Latin letters do.
MAX_COLUMNS = 24
# Combining marks on one letter: a vowel sign with a nasal or tone mark (Hindi "ह्रीं",
# Thai "กี้"); more is zalgo.
MAX_MARKS = 2
PUNCTUATION = frozenset(" .,'!?_-")
# What the page itself says, and words that read as someone in charge.
RESERVED = (
    "Guest", "Admin", "Administrator", "Moderator", "Mod", "System", "Server", "Staff", "Support",
    "Official", "Root", "Lab", "The Lab", "Lab Spawner", "Spawner", "Nobody", "Anonymous", "Everyone",
    "You", "Covid Clicker",
)  # fmt: skip


class InvalidName(ValueError):
    """A name a player may not take; the message says why."""


def _spoof_checker() -> icu.SpoofChecker:
    checker = icu.SpoofChecker()
    # One script, Common and Inherited characters aside; Latin may join Han with Hiragana and
    # Katakana, or with Bopomofo, or with Hangul (UTS #39 "highly restrictive"); digits of one
    # numbering system.
    checker.setChecks(icu.USpoofChecks.RESTRICTION_LEVEL | icu.USpoofChecks.MIXED_NUMBERS)
    checker.setRestrictionLevel(icu.URestrictionLevel.HIGHLY_RESTRICTIVE)
    return checker


_checker = _spoof_checker()


def clean(raw, *, max_length: int = Player.NAME_MAX) -> str:
    """Return `raw` as a name (NFKC, trimmed, spaces collapsed) or raise `InvalidName`.

    `max_length`: the longest name allowed (a player's by default; a room's name is longer).
    """
    return check(normal(raw, max_length=max_length), max_columns=max_length)


def normal(raw, *, max_length: int = Player.NAME_MAX) -> str:
    """`raw` in NFKC, trimmed, spaces collapsed; `InvalidName` if it is no string, empty or too long."""
    if not isinstance(raw, str):
        raise InvalidName("the name must be a string")
    name = " ".join(unicodedata.normalize("NFKC", raw).split())
    if not name:
        raise InvalidName("the name must not be empty")
    if len(name) > max_length:
        raise InvalidName(f"the name must be at most {max_length} characters")
    return name


def check(name: str, *, max_columns: int = MAX_COLUMNS) -> str:
    """Return the `normal` name if a player may take it, else raise `InvalidName`."""
    if any(_invisible(c) for c in name):
        raise InvalidName("the name must not contain invisible characters (fillers, zero-width spaces)")
    _check_characters(name)
    if not any(unicodedata.category(c)[0] in "LN" for c in name):
        raise InvalidName("the name needs at least one letter or digit")
    _check_marks(name)
    spoof = _checker.check(name)
    if spoof & icu.USpoofChecks.MIXED_NUMBERS:
        raise InvalidName("use the digits of one numbering system")
    if spoof:
        raise InvalidName("use the letters of one script (Han may go with kana, Hangul or Latin)")
    if columns(name) > max_columns:
        raise InvalidName(f"the name is too wide: at most {max_columns} columns, wide characters count 2")
    if any(k in reserved for k, reserved in zip(keys(name), _reserved_keys, strict=True)):
        raise InvalidName(f"{name!r} is reserved: it reads as the game's own words")
    return name


def keys(name: str) -> tuple[str, str]:
    """What no two names may share, either of: the confusable skeleton of the name's lower case,
    and that of its upper case, folded, letters, marks and digits only.

    "Вrаvе Stоаt", "BRAVE ST0AT" and "BraveStoat." share both with "Brave Stoat"; Greek
    "Βrave Stoat" only the upper one (a capital beta looks like B, a small one not like b),
    "rnoose" only the lower one with "moose". Both start from the case-folded name, so case
    variants always share both.
    """
    folded = name.casefold()
    return _key(folded), _key(folded.upper())


def _key(text: str) -> str:
    # The columns hold 4 characters per name character; a longer key is cut (names sharing
    # the cut prefix then count as alike, which only ever refuses).
    skeleton = _checker.getSkeleton(0, text).casefold()
    return "".join(c for c in skeleton if unicodedata.category(c)[0] in "LMN")[: 4 * Player.NAME_MAX]


def columns(name: str) -> int:
    """Columns the name takes in a monospace row: wide and fullwidth characters 2, marks 0."""
    width = 0
    for c in name:
        if unicodedata.category(c) in ("Mn", "Me"):
            continue
        width += 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
    return width


def _invisible(c: str) -> bool:
    # Default_Ignorable_Code_Point: fillers (U+3164, U+FFA0, U+115F, U+1160), zero-width and
    # bidi controls, variation selectors: characters that render as nothing.
    return icu.Char.hasBinaryProperty(c, icu.UProperty.DEFAULT_IGNORABLE_CODE_POINT)


def _check_characters(name: str) -> None:
    """Letters, digits and marks of any script, spaces and . , ' ! ? - _ only: nothing a
    browser could read as markup (< > & " are refused, not escaped), no symbol or control."""
    bad = [c for c in name if not (c in PUNCTUATION or unicodedata.category(c)[0] in "LM" or c.isdigit())]
    if bad:
        shown = "".join(dict.fromkeys(c for c in bad if c.isprintable()))[:8]
        raise InvalidName(
            "use letters, digits, spaces and . , ' ! ? - _ only" + (f" (not {shown})" if shown else "")
        )


def _check_marks(name: str) -> None:
    """A combining mark belongs to the letter before it, in that letter's script, and a letter
    takes at most MAX_MARKS: Hindi "राहुल" and Tamil "தமிழ்" pass, zalgo does not."""
    base, marks = None, 0
    for c in name:
        if unicodedata.category(c)[0] != "M":
            base, marks = (c if unicodedata.category(c)[0] == "L" else None), 0
            continue
        marks += 1
        if base is None or not _same_script(c, base):
            raise InvalidName("a combining mark must follow a letter of its script")
        if marks > MAX_MARKS:
            raise InvalidName(f"at most {MAX_MARKS} combining marks on one letter")


def _same_script(mark: str, letter: str) -> bool:
    if icu.Script.getScript(mark).getScriptCode() == icu.UScriptCode.INHERITED:
        return True  # accents such as U+0301 go on letters of any script
    return bool(set(icu.Script.getScriptExtensions(mark)) & set(icu.Script.getScriptExtensions(letter)))


_reserved_keys = tuple(frozenset(k) for k in zip(*(keys(word) for word in RESERVED), strict=True))
