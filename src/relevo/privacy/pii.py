"""PII scanning and redaction of free text: reviews, comments, search queries, LLM prompts.

``redact(text)`` replaces every personal datum it recognises with a token naming its kind
and returns the new text together with where each one was (offsets into the ORIGINAL
text; the matched values themselves are never kept, so the record can be logged). It runs
before storage when ``privacy.redact_text`` is set and always before text goes into an
LLM prompt. The module is pure (stdlib ``re``), stateless and thread-safe.

Detectors favour precision on the things reviews are full of (prices, years, dates,
ratings, quantities, movie titles) and check every number-shaped candidate it can:
Luhn for cards, mod-97 for IBANs, octet ranges for IPs, SSA rules for SSNs. Digits are
ASCII ``0-9`` only (Arabic-Indic or full-width digits are never read as numbers).

=====================  ===================================  ========================================
kind (token)           caught                               not caught (kept as is)
=====================  ===================================  ========================================
URL_WITH_CREDENTIALS   ``scheme://user:pass@host/...``: the  ``scheme://user@host`` (no password),
                       whole URL up to whitespace, trailing  credentials without ``scheme://``
                       ``.,;:!?)]}'"`` left out
EMAIL                  ``local@domain.tld``: local part of   ``jane at example dot com``, quoted
                       letters, digits, ``._%+'-``; ASCII    local parts, IP-literal or non-ASCII
                       domain with an alphabetic TLD (so     domains, ``user@localhost`` (no
                       ``ssh://git@host.com`` reads as one)  TLD), a bare ``@handle``
IBAN                   2 letters (an IBAN country) + 2       an IBAN failing mod-97 (its digit
                       check digits + BBAN, plain or in      groups may still read as a phone), of
                       groups of 4, any case; mod-97 == 1    another length than 15-34, or grouped
                                                             other than by 4
CARD                   13-19 digits, plain or in groups of   numbers failing Luhn (order ids);
                       4-6 (4-4-4-4, 4-6-5, ...) split by    IINs other than 2221-2720/2200-2204,
                       single spaces or dashes, IIN          3, 4, 5, 6 (UATP 1..., 9...);
                       starting 3/4/5/6 or Mastercard 2-     numbers of one repeated digit; cards
                       series/Mir, passing Luhn              split by dots
SSN                    ``AAA-GG-SSSS``, area not 000, 666    ``123 45 6789``, ``123456789``,
                       or 9xx, group not 00, serial not      part of a longer dashed code
                       0000
IP                     IPv4 dotted quad (octets 0-255);      versions like ``1.2.3`` (3 parts),
                       IPv6: 8 groups, or ``::`` with >= 2   ``v1.2.3.4``, times ``10:30:00``,
                       groups, optional IPv4 tail            MACs; a dotted-quad version number
                                                             ``1.2.3.4`` IS redacted
PHONE                  >= 8 digits in groups separated by    7-digit local numbers; numbers with
                       single space/dot/dash/parens:         no ``+``/``00``/leading 0 that are not
                       ``+CC ...``/``(+CC) ...`` (8-15       3-3-4 (``612 34 56 78``,
                       digits, ``(0)`` trunk dropped),       ``5551234567``); a single digit group
                       ``00CC ...`` (CC its own group);      after the 2nd group; extensions;
                       US ``(555) 123-4567``, ``555.123.     words (``five five five``). Never
                       4567``, ``1-800-555-0199``;           dates, years, prices, quantities (< 8
                       national 0-leading ``020 7946         digits or date-shaped). A 0-leading
                       0958``, ``06 12 34 56 78`` (9-12      id ``0123456789`` IS redacted
                       digits; 10-11 if unbroken)
ADDRESS                (a) ``[unit,] number name suffix      a line with no house number (``Baker
                       [unit]`` with suffix in St, Street,   Street``), city/ZIP/postcode lines
                       Ave, Road, Rd, Blvd, Lane, Ln, Dr,    (``Springfield, IL 62704``, ``SW1A
                       Drive, Way, Court, Ct, Place, Pl,     1AA``), suffixes not listed (``1
                       Terrace, Circle, Hwy, Parkway, Sq,    Infinite Loop``, ``1585 Broadway``),
                       Square, Crescent, Close, ...;         lower-case names before an ambiguous
                       (b) ``number[,] rue|avenue|bd|        suffix (``742 evergreen terrace``),
                       place|chemin|allée|quai|impasse|      lower-case French/Italian names
                       route ... Name``; (c) ``Via|Viale|    (``12 rue de la paix``), ``Karl
                       Piazza|Corso|Calle|Avenida|Rua|       Johans gate 1``, ``Am Markt 3``;
                       Carrer|Paseo Name[,] number``;        address-shaped titles ARE redacted
                       (d) ``Namestraße|-strasse|-str.|      (``21 Jump Street``, ``10 Cloverfield
                       -weg|-gasse|-platz|-allee|-straat|    Lane``)
                       -gracht|-laan|-gatan ... number``;
                       (e) ``P.O. Box 123``, ``Postfach``
NAME                   a name the text says is one: after    names with no cue ("loved it, Jane"),
                       "my name is", "I am", "I'm", "call    lower-case names, a cue followed by a
                       me", "this is", "Name:", "regards,",  common word ("I am happy"); a title
                       "thanks,", "cheers,", "signed", or a  after a cue IS redacted ("I am
                       "- Name" last line (a signature):     Legend"); "- Great acting" bullets
                       1-3 capitalised words                 before the last line are kept
=====================  ===================================  ========================================

Address rules in detail: (a) takes 1-4 name words; before the ambiguous suffixes
(Way, Drive, Court, Place, Square, Terrace, Circle, Close, Crescent, Grove, Gardens, Row,
Plaza, Parade, Trail) every name word and the suffix must be capitalised; before the
others (Street, St, Road, Avenue, ...) a name word may be lower-case but must not be a
function word or a quantity noun (``3 movies on the street``, ``2 hours road trip``, ``a
4 lane road`` are kept). A unit (Apt, Apartment, Unit, Suite, Ste, Flat, Floor, Room,
``#12``) right after the suffix, or before the number, is part of the match, as is a
capitalised compass suffix (NW, SE, ...). (b)-(d) need capitalised name words
(particles like de, la, des, del, di, d', l' excepted); (b) runs over every following
capitalised word (``12 rue de la Paix Paris`` takes ``Paris``).

Overlaps are resolved leftmost-longest (then by the order of kinds above). ``redact`` is
idempotent: its output is scanned again until nothing more is found (see ``scan``).
Every detector is one or a few compiled regexes anchored at the start of a token by a
look-behind, with bounded repetitions or ones that cannot split the same text two ways
(possessive digit runs, literal separators), plus O(length) validators; a scan is linear
in the length of the text (the tests time 5,000-character adversarial inputs).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Finding", "PiiKind", "Redacted", "contains_pii", "redact", "redact_many", "scan"]


class PiiKind(StrEnum):
    """What a finding is; ``kind.token`` is the text that replaces it."""

    URL_WITH_CREDENTIALS = "URL_WITH_CREDENTIALS"
    EMAIL = "EMAIL"
    IBAN = "IBAN"
    CARD = "CARD"
    SSN = "SSN"
    IP = "IP"
    PHONE = "PHONE"
    ADDRESS = "ADDRESS"
    NAME = "NAME"

    @property
    def token(self) -> str:
        return f"[{self.value}]"


_PRIORITY = {kind: rank for rank, kind in enumerate(PiiKind)}


@dataclass(frozen=True, slots=True)
class Finding:
    """One personal datum: its kind and ``[start, end)`` in the original text (code points)."""

    kind: PiiKind
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Redacted:
    """The redacted text and what was removed from where, in order of ``start``."""

    text: str
    found: tuple[Finding, ...]


def redact(text: str) -> Redacted:
    """Replace every PII span of ``text`` by its kind's token (``[EMAIL]``, ``[PHONE]``, ...)."""
    found = scan(text)
    return Redacted(_apply(text, found)[0] if found else text, found)


def contains_pii(text: str) -> bool:
    """Whether ``redact(text)`` would change anything."""
    return bool(scan(text))


def redact_many(texts: Iterable[str]) -> list[Redacted]:
    """``redact`` over a batch, in order."""
    if isinstance(texts, str | bytes):
        raise TypeError("texts must be an iterable of str, not a single str/bytes")
    return [redact(t) for t in texts]


def scan(text: str) -> tuple[Finding, ...]:
    """The non-overlapping PII spans of ``text``, leftmost-longest, in order of ``start``.

    Redacting one datum can expose another that was glued to it (``a@b.comc@d.com``: the
    first match ends inside the second's local part), so the redacted text is scanned again
    until nothing more is found; later findings that cover a token take its original span.
    That makes ``redact`` idempotent. Each pass covers at least one more character of
    ``text`` (tokens match no detector), so this ends; in practice a second pass finds
    nothing.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    found = _scan_once(text)
    while found:
        redacted, starts = _apply(text, found)
        more = _scan_once(redacted)
        if not more:
            break
        found = _merge(found, [_to_original(f, found, starts) for f in more])
    return found


def _scan_once(text: str) -> tuple[Finding, ...]:
    candidates = [f for detect in _DETECTORS for f in detect(text)]
    candidates.sort(key=lambda f: (f.start, -f.end, _PRIORITY[f.kind]))
    chosen: list[Finding] = []
    end = 0
    for f in candidates:
        if f.start >= end:
            chosen.append(f)
            end = f.end
    return tuple(chosen)


def _apply(text: str, found: tuple[Finding, ...]) -> tuple[str, list[int]]:
    """``text`` with each finding replaced by its token, and where each token starts."""
    parts: list[str] = []
    starts: list[int] = []
    pos = length = 0
    for f in found:
        parts.append(text[pos:f.start])
        length += f.start - pos
        starts.append(length)
        parts.append(f.kind.token)
        length += len(f.kind.token)
        pos = f.end
    parts.append(text[pos:])
    return "".join(parts), starts


def _to_original(f: Finding, found: tuple[Finding, ...], starts: list[int]) -> Finding:
    """Map a finding in the redacted text back to ``text``; a token it touches counts whole."""

    def origin(p: int) -> tuple[int, int]:  # the original span of the redacted character at p
        k = bisect_right(starts, p) - 1
        if k < 0:
            return p, p + 1
        token_end = starts[k] + len(found[k].kind.token)
        if p < token_end:
            return found[k].start, found[k].end
        q = found[k].end + p - token_end
        return q, q + 1

    return Finding(f.kind, origin(f.start)[0], origin(f.end - 1)[1])


def _merge(old: tuple[Finding, ...], new: list[Finding]) -> tuple[Finding, ...]:
    kept = [f for f in old if not any(n.start < f.end and f.start < n.end for n in new)]
    return tuple(sorted(kept + new, key=lambda f: f.start))


# ---------------------------------------------------------------------------------------
# Scanning helper: a regex proposes, a validator disposes (and may shorten the span).

_Validator = Callable[[re.Match[str]], "tuple[int, int] | None"]


def _scan_with(
    pattern: re.Pattern[str], kind: PiiKind, validate: _Validator
) -> Callable[[str], Iterator[Finding]]:
    def detect(text: str) -> Iterator[Finding]:
        pos = 0
        n = len(text)
        while pos < n:
            m = pattern.search(text, pos)
            if m is None:
                return
            span = validate(m)
            if span is None:
                pos = m.start() + 1  # the look-behinds keep retries at token starts only
            else:
                yield Finding(kind, span[0], span[1])
                pos = max(span[1], m.start() + 1)

    return detect


_TRAILING_PUNCT = ".,;:!?)]}'\""

# ---------------------------------------------------------------------------------------
# URL with credentials

_URL_CRED = re.compile(
    r"(?<![\w+.\-])[A-Za-z][A-Za-z0-9+.\-]{0,31}://[^\s/?#@:]+:[^\s/?#@]*@[^\s<>\"]+"
)


def _url_cred(m: re.Match[str]) -> tuple[int, int] | None:
    s = m.group()
    stripped = s.rstrip(_TRAILING_PUNCT)
    at = s.find("@")
    if len(stripped) <= at + 1:
        return None
    return m.start(), m.start() + len(stripped)


# ---------------------------------------------------------------------------------------
# Email

_EMAIL = re.compile(
    r"(?<![\w.%+'\-])[\w.%+'\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,63}(?![\w\-])"
)


def _email(m: re.Match[str]) -> tuple[int, int] | None:
    local = m.group()[: m.group().index("@")]
    if local.strip(".") == "" or not any(c.isalnum() for c in local):
        return None
    return m.span()


# ---------------------------------------------------------------------------------------
# IBAN

_IBAN_COUNTRIES = frozenset(
    "AD AE AL AT AZ BA BE BG BH BI BR BY CH CR CY CZ DE DJ DK DO EE EG ES FI FK FO FR GB GE "
    "GI GL GR GT HN HR HU IE IL IQ IS IT JO KW KZ LB LC LI LT LU LV LY MC MD ME MK MN MR MT "
    "MU NI NL NO OM PK PL PS PT QA RO RS RU SA SC SD SE SI SK SM SO ST SV TL TN TR UA VA VG "
    "XK YE".split()
)
_IBAN = re.compile(
    r"(?<![\w])[A-Za-z]{2}[0-9]{2}(?:[ ]?[A-Za-z0-9]{4}){2,8}(?:[ ]?[A-Za-z0-9]{1,3})?(?![\w])"
)


def _iban(m: re.Match[str]) -> tuple[int, int] | None:
    """The longest prefix (whole groups) that is an IBAN: a word of 1-4 letters/digits after
    an IBAN can be swallowed as a last group. ISO 13616 check: the BBAN followed by the
    country and check digits, letters as 10..35, is 1 mod 97; computed in one pass over
    the prefixes."""
    s = m.group().upper()
    if s[:2] not in _IBAN_COUNTRIES:
        return None
    head = int(str(int(s[0], 36)) + str(int(s[1], 36)) + s[2:4])  # 6 digits
    best = None
    rest, length = 0, 4
    for i in range(4, len(s)):
        c = s[i]
        if c != " ":
            v = int(c, 36)
            rest = (rest * (100 if v > 9 else 10) + v) % 97
            length += 1
        at_group_end = i + 1 == len(s) or s[i + 1] == " "
        if at_group_end and 15 <= length <= 34 and (rest * 1_000_000 + head) % 97 == 1:
            best = m.start() + i + 1
    return None if best is None else (m.start(), best)


# ---------------------------------------------------------------------------------------
# IP addresses

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\w]|\.[0-9])")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]{1,4})?"
    r"(?![\w:]|\.[0-9])"
)
_HEX4 = re.compile(r"[0-9a-fA-F]{1,4}")


def _ipv6(m: re.Match[str]) -> tuple[int, int] | None:
    s = m.group()
    if "." in s:
        head, _, v4 = s.rpartition(":")
        if not all(int(p) <= 255 and (p == "0" or p[0] != "0") for p in v4.split(".")):
            return None
        s = head + ":0:0"
    if s.count("::") > 1 or ":::" in s:
        return None
    if "::" in s:
        head, tail = s.split("::")
        groups = (head.split(":") if head else []) + (tail.split(":") if tail else [])
        if len(groups) > 7 or len(groups) < 2:
            return None
    else:
        groups = s.split(":")
        if len(groups) != 8:
            return None
    if not all(_HEX4.fullmatch(g) for g in groups):
        return None
    return m.span()


# ---------------------------------------------------------------------------------------
# Digit runs: cards, SSNs and phone numbers share one tokenizer.
#
# A run is a maximal sequence of digit groups (``123`` or ``(123)``/``(+44)``) joined by
# one space, dot or dash (or nothing next to a parenthesis), optionally led by ``+``. It
# starts where no word character, ``+`` or ``word.``/``word-`` comes before (so product
# codes like ``SKU-4412`` and versions like ``v1.2`` are not runs). Spaces split a run into
# chunks; a card/SSN/phone is a window of whole chunks.

_GROUP = r"(?:\(\+?[0-9]{1,5}\)|[0-9]++)"
_RUN = re.compile(
    rf"(?<![\w+])(?<!\w[.\-])\+?{_GROUP}(?:(?:[ .\-]|(?<=\))|(?=\())(?:{_GROUP}))*+"
)
_RUN_GROUP = re.compile(r"\(\+?[0-9]{1,5}\)|[0-9]+")


@dataclass(frozen=True, slots=True)
class _Group:
    start: int
    end: int
    digits: str
    paren: bool  # written as (123)
    plus: bool  # written as (+44)
    sep: str  # the separator before this group ("" for the first or next to a parenthesis)


def _chunks(text: str, m: re.Match[str]) -> list[list[_Group]]:
    """The run's groups, split into chunks at spaces."""
    chunks: list[list[_Group]] = []
    prev_end = m.start() + (1 if text[m.start()] == "+" else 0)
    for g in _RUN_GROUP.finditer(text, prev_end, m.end()):
        sep = text[prev_end:g.start()]
        token = g.group()
        paren, plus = token[0] == "(", token[:2] == "(+"
        group = _Group(g.start(), g.end(), token.strip("()+"), paren, plus, sep)
        if sep == " " or not chunks:
            chunks.append([group])
        else:
            chunks[-1].append(group)
        prev_end = g.end()
    return chunks


def _luhn(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = ord(c) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _is_card(groups: list[_Group], plus: bool) -> bool:
    """13-19 digits as printed on cards, a known IIN range, Luhn."""
    if plus or any(g.paren or g.sep == "." for g in groups):
        return False
    digits = "".join(g.digits for g in groups)
    if not 13 <= len(digits) <= 19:
        return False
    sizes = [len(g.digits) for g in groups]
    grouped = len(sizes) > 1
    if grouped and (sizes[0] != 4 or sizes[-1] > 6 or any(not 4 <= s <= 6 for s in sizes[1:-1])):
        return False
    iin = digits[:4]
    if not (digits[0] in "3456" or "2200" <= iin <= "2204" or "2221" <= iin <= "2720"):
        return False
    return len(set(digits)) > 1 and _luhn(digits)


def _is_ssn(groups: list[_Group], plus: bool) -> bool:
    """AAA-GG-SSSS outside the never-issued ranges."""
    if plus or [len(g.digits) for g in groups] != [3, 2, 4] or any(g.paren for g in groups):
        return False
    if groups[1].sep != "-" or groups[2].sep != "-":
        return False
    area, group, serial = (g.digits for g in groups)
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _date_like(sizes: list[int]) -> bool:
    a, b, c = (sizes + [0, 0, 0])[:3]
    return (a <= 2 and b <= 2 and c == 4) or (a == 4 and b <= 2 and 0 < c <= 2)


def _is_phone(groups: list[_Group], plus: bool) -> bool:
    """International (+CC / 00CC), NANP 3-3-4, or 0-leading national; >= 8 digits."""
    intl = plus or groups[0].plus
    if intl:  # +44 (0)20 ...: the (0) trunk prefix is not dialled
        groups = [g for g in groups if not (g.paren and g.digits == "0")]
    sizes = [len(g.digits) for g in groups]
    if any(s == 1 for s in sizes[2:]):
        return False
    digits = "".join(g.digits for g in groups)
    if intl:
        return 8 <= len(digits) <= 15 and digits[0] != "0"
    if sizes == [3, 3, 4] or (sizes == [1, 3, 3, 4] and digits[0] == "1"):
        return True
    if digits.startswith("00"):  # 00 + country code as the first group, e.g. 0044 20 ...
        cc = len(groups[0].digits)
        return (len(groups) >= 2 and 3 <= cc <= 5 and digits[2] != "0" and digits[cc] != "0"
                and 8 <= len(digits) - 2 <= 15)
    if digits[0] == "0" and not _date_like(sizes):
        if len(groups) == 1:
            return 10 <= len(digits) <= 11
        return 9 <= len(digits) <= 12
    return False


_MAX_WINDOW_CHUNKS = 8
_MAX_WINDOW_DIGITS = 20  # 19 for a card; a phone is at most 15 (+ 00 or a (0) trunk)


def _classify(groups: list[_Group], plus: bool, one_chunk: bool) -> PiiKind | None:
    if _is_card(groups, plus):
        return PiiKind.CARD
    if one_chunk and _is_ssn(groups, plus):
        return PiiKind.SSN
    if _is_phone(groups, plus):
        return PiiKind.PHONE
    return None


def _may_start(chunks: list[list[_Group]], i: int, plus: bool) -> bool:
    """Whether a card/SSN/phone can start at chunk ``i`` (a cheap filter on its first groups)."""
    first = chunks[i][0]
    d = first.digits
    if plus or first.plus or d[0] == "0" or len(d) == 3:
        return True
    if d[0] in "23456" and (len(d) == 4 or len(d) >= 13):
        return True
    if d == "1":  # 1-800-555-0199
        if len(chunks[i]) > 1:
            return len(chunks[i][1].digits) == 3
        return i + 1 < len(chunks) and len(chunks[i + 1][0].digits) == 3
    return False


def _digit_runs(text: str) -> Iterator[Finding]:
    """Cards, SSNs and phones: per run, the leftmost-longest window of chunks that is one."""
    for m in _RUN.finditer(text):
        chunks = _chunks(text, m)
        plus = text[m.start()] == "+"
        after = text[m.end():m.end() + 1]
        n = len(chunks) - 1 if after.isalnum() or after == "_" else len(chunks)  # "4 5 6th"
        counts = [0]
        for chunk in chunks:
            counts.append(counts[-1] + sum(len(g.digits) for g in chunk))
        i = 0
        while i < n:
            j, kind = i, None
            lead = plus and i == 0
            if _may_start(chunks, i, lead):
                for j in range(min(n, i + _MAX_WINDOW_CHUNKS), i, -1):
                    n_digits = counts[j] - counts[i]
                    if n_digits < 8:
                        break
                    if n_digits <= _MAX_WINDOW_DIGITS:
                        kind = _classify([g for c in chunks[i:j] for g in c], lead, j == i + 1)
                        if kind is not None:
                            break
            if kind is None:
                i += 1
                continue
            start = m.start() if lead else chunks[i][0].start
            yield Finding(kind, start, chunks[j - 1][-1].end)
            i = j


# ---------------------------------------------------------------------------------------
# Street addresses

_SUFFIXES_PLAIN = (
    "street st avenue ave road rd boulevard blvd lane ln dr ct pl ter cir highway hwy "
    "parkway pkwy sq strasse straße"
).split()
_SUFFIXES_AMBIGUOUS = (
    "way drive court place square terrace circle close crescent grove gardens row plaza "
    "parade trail"
).split()
_SUFFIX_WORDS = frozenset(_SUFFIXES_PLAIN + _SUFFIXES_AMBIGUOUS)
_AMBIGUOUS = frozenset(_SUFFIXES_AMBIGUOUS)
_STOPWORDS = frozenset(
    """a an the and or but nor of on in at to up by for from with into onto over under off out
    is was are were be been am my your his her our their its it this that these those me we
    you they i he she him them us not no so as if all more most less than then very too just
    only also other same next last first time times star stars hour hours hr hrs minute
    minutes min mins second seconds sec secs day days week weeks month months year years
    episode episodes season seasons movie movies film films show shows part parts people
    guys kids friends dollars bucks euros pounds tickets points mile miles km block blocks
    ways lanes roads streets""".split()
)
_PARTICLES = frozenset(
    "de du des la le les d' l' d’ l’ di del della delle dei da do dos das y e von van der den"
    .split()
)

_UNIT = r"(?:apt|apartment|unit|suite|ste|flat|fl|floor|room|rm)\.?[ ]?\#?[ ]?[a-z0-9][\w\-]{0,5}"
_HOUSE_NO = r"[0-9]{1,5}(?:[a-z](?![\w]))?(?:[\-–/][0-9]{1,5}(?:[a-z](?![\w]))?)?"
_NAME_WORD = r"(?:[0-9]{1,3}(?:st|nd|rd|th)|[^\W\d_][\w'’.\-]*)"
_SUFFIX_ALT = "|".join(sorted(_SUFFIX_WORDS, key=len, reverse=True))

# (a) English order: [unit,] number name-words suffix [compass] [unit]
_ADDRESS_EN = re.compile(
    rf"(?<![\w$€£#/.,:\-])(?:{_UNIT},?[ ]+)?{_HOUSE_NO}[ ]+"
    rf"(?P<name>(?:{_NAME_WORD}[ ]+){{1,4}})(?P<suffix>{_SUFFIX_ALT})(?![\w])"
    rf"(?:[ ]+(?-i:N|S|E|W|NE|NW|SE|SW)(?![\w]))?"
    rf"(?:\.?,?[ ]+{_UNIT}|\.?,?[ ]*\#[ ]?[a-z0-9][\w\-]{{0,5}})?(?![\w])",
    re.IGNORECASE,
)


def _capitalised(word: str) -> bool:
    return word[:1].isupper() or word[:1].isdigit()


def _address_en(m: re.Match[str]) -> tuple[int, int] | None:
    suffix = m.group("suffix")
    ambiguous = suffix.lower() in _AMBIGUOUS
    if ambiguous and not suffix[0].isupper():
        return None
    for word in m.group("name").split():
        core = word.strip(".'’-")
        if not core:
            return None
        lower = core.lower()
        if lower in _SUFFIX_WORDS:  # "Park Lane", "Court Street" but not "a 4 lane road"
            if not core[0].isupper():
                return None
        elif lower in _STOPWORDS:
            return None
        if ambiguous and not _capitalised(core):
            return None
    return m.span()


def _name_end(tokens: list[re.Match[str]]) -> int | None:
    """End of the longest prefix of capitalised words and particles that ends in a word."""
    end = None
    for t in tokens:
        word = t.group()
        lower = word.lower()
        if lower in _PARTICLES:
            continue
        if lower[:2] in ("d'", "l'", "d’", "l’") and word[2:3].isupper():
            end = t.end()
            continue
        if not word[0].isupper():
            break
        end = t.end()
    return end


_NAME_TOKEN = re.compile(r"[^\W\d_][\w'’\-]*|[dl]['’]", re.IGNORECASE)

# (b) French order: number[,] type Name...
_ADDRESS_FR = re.compile(
    rf"(?<![\w$€£#/.,:\-]){_HOUSE_NO}(?:[ ]?(?:bis|ter)(?![\w]))?,?[ ]+"
    r"(?:rue|avenue|av\.|bd|boulevard|place|chemin|allée|allee|quai|impasse|route|cours)[ ]+"
    r"(?P<name>[^\W\d_][\w'’\-]*(?:[ ]+[^\W\d_][\w'’\-]*){0,5})",
    re.IGNORECASE,
)


def _address_fr(m: re.Match[str]) -> tuple[int, int] | None:
    tokens = list(_NAME_TOKEN.finditer(m.string, m.start("name"), m.end("name")))
    end = _name_end(tokens)
    return None if end is None else (m.start(), end)


# (c) Italian/Spanish/Portuguese order: Type Name[,] number
_ADDRESS_IT = re.compile(
    r"(?<![\w])(?P<type>via|viale|piazza|piazzale|corso|vicolo|calle|avenida|paseo|carrer|rua|"
    r"travessa|praça|rambla)[ ]+(?P<name>[^\W\d_][\w'’\-]*(?:[ ]+[^\W\d_][\w'’\-]*){0,4}),?[ ]+"
    r"(?:n[.º°]?[ ]?)?[0-9]{1,4}(?:[a-z](?![\w]))?(?![\w]|[.,][0-9])",
    re.IGNORECASE,
)


def _address_it(m: re.Match[str]) -> tuple[int, int] | None:
    if not m.group("type")[0].isupper():
        return None
    tokens = list(_NAME_TOKEN.finditer(m.string, m.start("name"), m.end("name")))
    if _name_end(tokens) != m.end("name"):
        return None
    return m.span()


# (d) German/Dutch/Nordic order: Namestraße number, Berliner Straße number
_COMPOUND = (
    r"straße|strasse|str\.|gasse|weg|platz|allee|damm|ufer|straat|gracht|laan|steeg|gatan|vägen"
)
_ADDRESS_DE = re.compile(
    r"(?<![\w])(?P<street>[^\W\d_][\w\-]*[ ]+(?:straße|strasse|str\.|weg|gasse|platz|allee)"
    rf"|[^\W\d_][\w\-]*?(?P<compound>{_COMPOUND}))"
    r"[ ]+[0-9]{1,4}(?:[a-z](?![\w]))?(?:[\-–/][0-9]{1,4}[a-z]?)?(?![\w]|[.,][0-9])",
    re.IGNORECASE,
)


def _address_de(m: re.Match[str]) -> tuple[int, int] | None:
    street = m.group("street")
    if not all(w[0].isupper() for w in street.split()):
        return None
    compound = m.group("compound")
    if compound is not None and len(street) - len(compound) < 2:  # "Weg 3": the suffix alone
        return None
    return m.span()


# (e) post-office boxes
_PO_BOX = re.compile(
    r"(?<![\w])(?:p\.?[ ]?o\.?[ ]?box|post[ ]office[ ]box|postfach)[ ]*[0-9]{1,7}(?![\w])",
    re.IGNORECASE,
)


def _accept(m: re.Match[str]) -> tuple[int, int] | None:
    return m.span()


# NAME: a person's name where the text itself says it is one: a self-introduction ("my name
# is Jane Doe", "I'm Jane", "call me Jane", "this is Jane Doe speaking") or a signature /
# form field ("Name: Jane Doe", "regards, Jane", "- Jane Doe" at the end). Only the name
# (1-3 capitalised words) is replaced. Capitalised words elsewhere (titles, places) are
# not names to this detector: it would otherwise redact half of every film review.
_NAME_WORDS = r"(?P<name>[A-Z][a-z'’\-]{1,30}(?:[ \t]+[A-Z][a-z'’\-]{1,30}){0,2})"
_NAME_CUE = re.compile(
    r"(?i:\bmy\s+name\s+is|\bi\s+am|\bi['’]m|\bcall\s+me|\bthis\s+is|\bname\s*:|\bregards\s*,|\bthanks\s*,"
    r"|\bcheers\s*,|\bsigned\s*,?)[ \t]*" + _NAME_WORDS + r"\b"
)
# a signature: "- Jane Doe" as the last line (a "- Great acting" bullet elsewhere is not one)
_SIGNATURE = re.compile(r"(?:^|\n)[ \t]*[-–—][ \t]*" + _NAME_WORDS + r"[ \t.]*\Z")
_NOT_NAMES = frozenset({"I", "A", "The", "So", "Not", "Very", "Really", "Just", "Here", "Going", "Happy", "Sad",
                        "Sure", "Glad", "Sorry", "Back", "Done", "Watching", "Looking", "Bored", "Tired", "This",
                        "That", "It", "Also", "All", "Thanks", "Thank", "Best", "Hi", "Hello", "Dear", "Ok", "Okay"})


def _name(m: re.Match[str]) -> tuple[int, int] | None:
    words = m.group("name").split()
    if words[0] in _NOT_NAMES:
        return None
    return m.start("name"), m.end("name")


_DETECTORS: tuple[Callable[[str], Iterable[Finding]], ...] = (
    _scan_with(_URL_CRED, PiiKind.URL_WITH_CREDENTIALS, _url_cred),
    _scan_with(_EMAIL, PiiKind.EMAIL, _email),
    _scan_with(_IBAN, PiiKind.IBAN, _iban),
    _scan_with(_IPV4, PiiKind.IP, _accept),
    _scan_with(_IPV6, PiiKind.IP, _ipv6),
    _digit_runs,
    _scan_with(_ADDRESS_EN, PiiKind.ADDRESS, _address_en),
    _scan_with(_ADDRESS_FR, PiiKind.ADDRESS, _address_fr),
    _scan_with(_ADDRESS_IT, PiiKind.ADDRESS, _address_it),
    _scan_with(_ADDRESS_DE, PiiKind.ADDRESS, _address_de),
    _scan_with(_PO_BOX, PiiKind.ADDRESS, _accept),
    _scan_with(_NAME_CUE, PiiKind.NAME, _name),
    _scan_with(_SIGNATURE, PiiKind.NAME, _name),
)
