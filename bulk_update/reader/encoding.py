"""Which legacy encoding a CSV is in: found with charset-normalizer, used only when sure.

Excel's plain "CSV" (not "CSV UTF-8") is saved in the Windows code page of the user's
language. A file that has no BOM and is not UTF-8 is one of those, and its bytes alone often
fit several: Hebrew letters in cp1255 are Greek letters in cp1253 and Cyrillic in cp1251;
`Dvořák` in cp1250 is `Dvoøák` in cp1252. Decoding with the wrong one sends names the
person never typed, so the rule is conservative: an encoding is used only when every other
reading of the bytes that gives a *different* text is clearly worse.

The rule (`detect`), measured on the tests' corpus (tests/encoding_corpus.py):

1. charset-normalizer proposes the code pages Excel writes (`EXCEL_CODEPAGES`), each with
   its `chaos` (how messy the text is) and `coherence` (how well its letters follow a
   language). Code pages that decode the sample to the same text are one reading
   (`could_be_from_charset`: cp1255 and iso-8859-8 for Hebrew letters, cp932 and
   shift_jis...): they never conflict.
2. Each reading's words are checked for what mis-decoding leaves behind and languages do
   not (`_odd_words`): letters of two scripts in one word (`Josι`); Latin letters that no
   one alphabet of a language written in that code page holds together (`Dvoøák`: ø is
   Danish and Norwegian, á is not; `Yýlmaz`: ý is Czech, not written in cp1252); a symbol
   inside a word (`Ma³gorzata`); a final letter inside a word (Greek ς, Hebrew ם...); a
   Cyrillic word starting with ъ, ь or ы.
3. One reading wins over another when it has fewer odd words; with as many, when it is
   less chaotic by CHAOS_MARGIN or (on COHERENCE_WORDS words or more) more coherent by
   COHERENCE_MARGIN. charset-normalizer
   cannot tell the Latin code pages apart (cp1252, cp1250, cp1254 and cp1257 all give
   letters, as chaotic and as coherent); for them one prior is allowed:
   cp1252, the code page of most of Excel's users, wins over another single-byte reading
   when neither has an odd word among at least PRIOR_EVIDENCE words where they differ (a
   Czech, Polish or Turkish sheet read as cp1252 shows odd words well before that).
4. A reading is used when it wins over every other one, holds almost no odd words itself
   (ODD_ALLOWED) and, in a code page of one non-Latin script, is of some language
   (coherence above 0); else the file is ambiguous and the run stops naming the likely
   encodings.

So a short file with a single accented letter is refused (nothing tells its code page), a
Western sheet of tens of rows reads as cp1252, and a Hebrew, Greek, Cyrillic, Japanese or
Chinese sheet reads in its code page when its text says so. Nothing is decoded when in
doubt: `--encoding NAME` or `[input] encoding` then says which it is.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass

#: The code pages Excel's plain "CSV" is saved in (Windows' ANSI code pages), the ones
#: detection chooses among: Central European, Cyrillic, Western, Greek, Turkish, Hebrew,
#: Arabic, Baltic, Vietnamese, Thai, Japanese, Chinese (GB18030 holds GBK), Korean, Big5.
EXCEL_CODEPAGES = (
    "cp1250",
    "cp1251",
    "cp1252",
    "cp1253",
    "cp1254",
    "cp1255",
    "cp1256",
    "cp1257",
    "cp1258",
    "cp874",
    "cp932",
    "gb18030",
    "cp949",
    "cp950",
)
#: Where code pages give the same text, the one named: Western first (the prior below).
_PREFERENCE = ("cp1252", *(n for n in EXCEL_CODEPAGES if n != "cp1252"))
_LATIN = frozenset({"cp1250", "cp1252", "cp1254", "cp1257", "cp1258"})
#: The best reading must be less chaotic than another by this much to win on chaos alone.
CHAOS_MARGIN = 0.03
#: ... or more coherent by this much.
COHERENCE_MARGIN = 0.25
#: ... only on a sample of at least this many words with a non-ASCII letter.
COHERENCE_WORDS = 30
#: Words that read differently in cp1252 and another single-byte code page, none odd in
#: either, before cp1252 is preferred.
PRIOR_EVIDENCE = 5
#: The share of its words with a non-ASCII letter the chosen reading may have odd (a stray
#: `°C` in a note), as 1 in this many.
ODD_ALLOWED = 50

#: The non-ASCII letters of the languages written with Latin letters in Excel's code
#: pages (`ª` and `º` as in `Mª José`, `Nº`). Icelandic and Faroese are left out on
#: purpose: their ð þ ý are what Turkish letters become in cp1252, so with them a Turkish
#: sheet would look Icelandic; an Icelandic sheet is refused instead, never misread. So is
#: Welsh, whose vowels take every accent (with it `pondìlí`, Czech `pondělí` in cp1252,
#: would be a word), and Dutch's rare á ó.
_ALPHABETS = tuple(
    frozenset(letters)
    for letters in (
        "àâæçéèêëîïôœùûüÿ",  # French
        "äöüß",  # German
        "áéíñóúüªº",  # Spanish
        "áâãàçéêíóôõúªº",  # Portuguese
        "àèéìòùª",  # Italian (í ó ú are of old spelling: a Czech ě í reads as ì í)
        "àçèéíïòóúüŀªº",  # Catalan
        "éëïöüèà",  # Dutch
        "æøåéóòâô",  # Danish, Norwegian
        "åäöéü",  # Swedish, Finnish
        "äöåšž",  # Finnish
        "áčďéěíňóřšťúůýž",  # Czech
        "áäčďéíĺľňóôŕšťúýž",  # Slovak
        "ąćęłńóśźż",  # Polish
        "áéíóöőúüű",  # Hungarian
        "ăâîşţ",  # Romanian, as Windows writes it (cedillas)
        "čćđšž",  # Croatian, Slovene, Bosnian, Serbian (Latin)
        "çğıöşüâîû",  # Turkish
        "äõöüšž",  # Estonian
        "āčēģīķļņšūž",  # Latvian
        "ąčęėįšųūž",  # Lithuanian
        "çë",  # Albanian
    )
)
_FINALS = {"GREEK": "ς", "HEBREW": "ךםןףץ"}
_NOT_FIRST = {"CYRILLIC": "ъьыЪЬЫ"}
_CJK_SCRIPTS = frozenset({"CJK", "HIRAGANA", "KATAKANA", "HANGUL", "HALFWIDTH", "FULLWIDTH"})
#: Unicode categories of non-ASCII characters that do not belong inside a word: symbols,
#: and numbers (¹ ² ³ ¼ ½, Thai digits)...
_SYMBOLS = frozenset({"So", "Sc", "Sk", "Sm", "No", "Nd"})
#: ... but for the ones people do write next to letters: `N°`, `§2`, full-width digits.
_IN_WORD = frozenset("°§０１２３４５６７８９")


@dataclass(frozen=True, slots=True)
class Reading:
    """One way to decode the sample: its code pages (all giving the same text) and scores."""

    encodings: tuple[str, ...]
    text: str
    chaos: float
    coherence: float
    odd: int
    words: int  # words with a non-ASCII letter

    @property
    def encoding(self) -> str:
        """The code page to decode with: the Windows one where the text is the same."""
        return self.encodings[0]

    @property
    def single_byte(self) -> bool:
        """True for a code page of one byte per character (characters align with bytes)."""
        return self.encoding not in _MULTI_BYTE


_MULTI_BYTE = ("cp932", "gb18030", "cp949", "cp950")
_SINGLE_BYTE = frozenset(EXCEL_CODEPAGES) - frozenset(_MULTI_BYTE)
#: Control characters a text line may hold (the CSV's own line ends; a tab).
_TEXT_CONTROLS = frozenset("\t\r\n")


def _reads_as_text(sample: bytes, encoding: str) -> bool:
    """Whether `encoding` decodes `sample` to text: every byte taken, no control characters
    but tab and line ends (binary data decodes to those in every single-byte code page)."""
    try:
        text = sample.decode(encoding)
    except UnicodeDecodeError:
        return False
    return not any(unicodedata.category(c) == "Cc" and c not in _TEXT_CONTROLS for c in text)


@dataclass(frozen=True, slots=True)
class Detection:
    """What `detect` found: the encoding to use, or None with the likely ones."""

    encoding: str | None
    likely: tuple[str, ...]


def detect(sample: bytes) -> Detection:
    """The encoding of `sample` (bytes that are not UTF-8) when sure; see the module doc.

    `Detection.encoding` None and `likely` empty: no code page reads the bytes as text.
    """
    from charset_normalizer import from_bytes  # imported here: UTF-8 files never need it

    steps = 5
    matches = from_bytes(
        sample,
        steps=steps,
        # Look at the whole sample: it is already bounded, and made of the lines with
        # non-ASCII bytes, every one of which counts.
        chunk_size=max(512, len(sample) // steps + 1),
        cp_isolation=list(EXCEL_CODEPAGES),
        preemptive_behaviour=False,
        enable_fallback=False,
    )
    readings: dict[str, Reading] = {}
    for match in matches:
        names = [match.encoding, *match.could_be_from_charset]
        windows = [n for n in _PREFERENCE if n in names]
        if not windows:
            continue
        text = str(match)
        if text in readings:
            continue
        odd, words = _odd_words(text, _alphabets(tuple(windows)))
        readings[text] = Reading(
            tuple(windows), text, float(match.chaos), float(match.coherence), odd, words
        )
    if not readings:
        # charset-normalizer finds a few short CJK names too chaotic in every code page:
        # the file is text all the same when a code page reads it as text. Not used
        # (nothing says which), only named: the many-byte code pages first, since their
        # bytes fit far fewer texts by chance.
        fits = sorted(
            (n for n in EXCEL_CODEPAGES if _reads_as_text(sample, n)),
            key=lambda n: n in _SINGLE_BYTE,
        )
        return Detection(None, tuple(fits[:4]))
    found = list(readings.values())
    # A reading in a script of one code page (Greek, Hebrew, Thai...) in no language at
    # all (coherence 0) never wins: its letters are that code page's leftovers. Latin
    # names alone, and CJK, often have no coherence measured.
    winners = [
        r
        for r in found
        if (r.coherence > 0 or r.encoding in _LATIN or not r.single_byte)
        and all(_beats(r, o) for o in found if o is not r)
    ]
    if len(winners) == 1 and winners[0].odd * ODD_ALLOWED <= winners[0].words:
        return Detection(winners[0].encoding, (winners[0].encoding,))
    # The likely ones, the most plausible first.
    found.sort(key=lambda r: (r.odd, -r.coherence, r.chaos, EXCEL_CODEPAGES.index(r.encoding)))
    return Detection(None, tuple(r.encoding for r in found[:4]))


def _beats(best: Reading, other: Reading) -> bool:
    """True when `best` is clearly the better reading of the bytes than `other`."""
    if best.odd != other.odd:
        # What mis-decoding leaves behind decides first: the margins compare like with like.
        return best.odd < other.odd
    if best.coherence > 0 and other.chaos - best.chaos >= CHAOS_MARGIN:
        # Only for a text of some language: on a few CJK names, the wrong code page can
        # be the less chaotic one.
        return True
    if best.words >= COHERENCE_WORDS and best.coherence - other.coherence >= COHERENCE_MARGIN:
        # Letter frequencies say little about a dozen words: Hebrew names read as
        # Bulgarian can score higher than in Hebrew.
        return True
    if "cp1252" in best.encodings and other.single_byte and best.odd == other.odd == 0:
        # Single-byte: character i of both texts is byte i of the sample.
        return _differing_words(best.text, other.text) >= PRIOR_EVIDENCE
    return False


def _words(text: str) -> list[tuple[int, int]]:
    """The spans of the words of `text`: runs of letters, marks and in-word symbols."""
    spans = []
    start = -1
    for i, char in enumerate(text):
        inside = char.isalpha() or unicodedata.category(char)[0] == "M"
        inside = inside or (not char.isascii() and _symbol(char))
        if inside and start < 0:
            start = i
        elif not inside and start >= 0:
            spans.append((start, i))
            start = -1
    if start >= 0:
        spans.append((start, len(text)))
    return spans


@functools.cache
def _alphabets(encodings: tuple[str, ...]) -> tuple[frozenset[str], ...]:
    """The alphabets of the languages written in these code pages: all of whose letters
    they hold (Czech is not written in cp1252, so `Yýlmaz` is no word there)."""

    def holds(encoding: str, letters: frozenset[str]) -> bool:
        try:
            "".join(letters).encode(encoding)
        except UnicodeEncodeError:
            return False
        return True

    return tuple(a for a in _ALPHABETS if any(holds(e, a) for e in encodings))


def _odd_words(text: str, alphabets: tuple[frozenset[str], ...]) -> tuple[int, int]:
    """(odd words, words with a non-ASCII character) of `text`; see the module doc."""
    odd = words = 0
    for start, end in _words(text):
        word = text[start:end]
        if word.isascii() or not any(c.isalpha() for c in word):
            continue
        words += 1
        odd += _odd(word, alphabets)
    return odd, words


def _odd(word: str, alphabets: tuple[frozenset[str], ...]) -> bool:
    letters = [c for c in word if c.isalpha()]
    if not letters:
        return False
    # A combining mark of another script (Thai's on a Latin letter) counts as a letter.
    marks = {_script(c) for c in word if unicodedata.category(c)[0] == "M"}
    scripts = {_script(c) for c in letters} | (marks - {"COMBINING"})
    if scripts & _CJK_SCRIPTS:
        # Japanese and Chinese mix their scripts, Latin letters and symbols (`★`) in one run.
        scripts = (scripts - _CJK_SCRIPTS - {"LATIN"}) | {"CJK"}
    elif any(_symbol(c) for c in word):
        return True  # a symbol touching a letter: `Ma³gorzata`, `£ukasz`, Thai `๐ๅ๒ไ`
    if len(scripts) > 1:
        return True
    if scripts != {"LATIN"}:
        (script,) = scripts
        body = [c for c in word if c.isalpha()]
        # Spelling rules that a text read in the wrong code page breaks at once: final
        # letters (Greek ς, Hebrew ך ם ן ף ץ) only at a word's end, Cyrillic ъ ь ы never first.
        finals = _FINALS.get(script, "")
        return any(c in finals for c in body[:-1]) or body[0] in _NOT_FIRST.get(script, "")
    accented = {c for c in word.lower() if not c.isascii() and c.isalpha()}
    return bool(accented) and not any(accented <= alphabet for alphabet in alphabets)


def _symbol(char: str) -> bool:
    return char not in _IN_WORD and unicodedata.category(char) in _SYMBOLS


def _script(char: str) -> str:
    # `KATAKANA-HIRAGANA PROLONGED SOUND MARK`, `CJK UNIFIED IDEOGRAPH-4E00`: the first word.
    return unicodedata.name(char, "?").split(" ", 1)[0].split("-", 1)[0]


def _differing_words(first: str, second: str) -> int:
    """How many words of `first` read differently in `second` (same length, aligned).

    A word repeated counts once: a city on every row is no more evidence than on one.
    """
    return len({first[s:e] for s, e in _words(first) if first[s:e] != second[s:e]})
