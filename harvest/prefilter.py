"""Which PubMed records could match the topic, decided on their raw bytes before any parse.

`import --match-topic` over NLM's baseline reads millions of records of which a few in ten
thousand are about ketamine. The topic query needs both of its concepts (`query.CONCEPTS`), and
every way the ketamine concept can match -- a MeSH heading, or a text term in the title,
abstract or keywords -- puts one of a few stems ("ketamin", "spravato") into the record's text.
So a record whose text cannot hold such a stem is dropped here, unparsed; the rest go to the
full parser and matcher unchanged.

Sound, not clever: a record is dropped only when no field can hold a stem, in whatever form the
parser would read it -- any letter case, numeric character references (`&#x4b;etamine`), the
non-ASCII letters that Python's case-insensitive matching equates with ASCII ones (the Kelvin
sign, dotted and dotless i, long s), inline markup splitting a word (`keta<i>mine</i>`),
comments and processing instructions the parser removes, CDATA sections. A record with any of
those is normalised the slow way; a record with none (most of them) is searched as it is, which
is then the same thing. Records are searched a read at a time (one pass over it for each kind of
hit, not one per record), and only a record with a hit is judged alone. Anything unusual -- a
record split by a comment or CDATA marker, a record too large, an encoding other than UTF-8, ASCII or Latin-1, a book record -- passes
through untouched, for the parser to judge. tests/test_prefilter.py proves the soundness over
every shared file and over clones carrying the stems in each field and form.

Pure: bytes in, bytes out. Must never: drop a record the full matcher would keep.
"""

from __future__ import annotations

import bisect
import io
import queue
import re
import sys
import threading

from .query import KETAMINE


def _stems(terms: tuple[str, ...]) -> tuple[bytes, ...]:
    """The shortest lower-case strings, one of which every term of the concept contains."""
    words = sorted({t.rstrip("*").lower() for t in terms}, key=len)
    stems: list[str] = []
    for word in words:
        if not any(stem in word for stem in stems):
            stems.append(word)
    for stem in stems:
        # The matcher lets a hyphen or space in a term match either: a stem must have none.
        if not re.fullmatch(r"[a-z]+", stem):
            raise ValueError(f"prefilter: the topic term stem {stem!r} is not plain letters")
    return tuple(s.encode() for s in stems)


STEMS = _stems(KETAMINE.text + KETAMINE.mesh)

# The non-ASCII characters that `re.I` or str.lower() equates with a letter of a stem: the
# dotted and dotless i, the Kelvin sign, the long s. tests/test_prefilter.py checks this list
# against every Unicode code point (too slow to compute on each start).
LOOKALIKES: tuple[tuple[bytes, bytes], ...] = (
    ("\u0130".encode(), b"i"),
    ("\u0131".encode(), b"i"),
    ("\u212a".encode(), b"k"),
    ("\u017f".encode(), b"s"),
)


def lookalikes_of(stems: tuple[bytes, ...]) -> set[tuple[bytes, bytes]]:
    """Every (non-ASCII character, ASCII letter) pair a case-insensitive match equates."""
    letters = {chr(c) for stem in stems for c in stem}
    return {
        (chr(cp).encode(), letter.encode())
        for cp in range(128, sys.maxunicode + 1)
        for letter in letters
        if re.fullmatch(letter, chr(cp), re.I) or chr(cp).lower() == letter
    }


START, END = b"<PubmedArticle>", b"</PubmedArticle>"
# Markup that may hide or split a stem, or that makes cutting at record tags unsafe.
_NEVER_DROP = (b"<!--", b"-->", b"<![CDATA[", b"]]>", b"<?", b"<!")
# Markup that can stand between two letters of a word: text run into a start (or empty) tag,
# or a closing tag run into text or into a start tag. Any tag sequence splitting a word starts
# with the first and ends with one of the others. (PubMed's own layout, one element a line,
# has none of them; compact XML has the last, and is then searched the slow way.)
# (Written to start with "<", which the regex engine then looks for as a literal: the same
# matches as [^>\s]<[^/]|</[^>]*>(?:[^<\s]|<[^/]), several times faster.)
_MIXED = re.compile(rb"<(?:(?<=[^>\s]<)[^/]|/[^>]*>(?:[^<\s]|<[^/]))")
_TAG = re.compile(rb"<[^>\"']*(?:(?:\"[^\"]*\"|'[^']*')[^>\"']*)*>")  # quoted values may hold ">"
_CHAR_REF = re.compile(rb"&#(?:[xX]([0-9a-fA-F]{1,8})|([0-9]{1,10}));")
# What sends a record to `record_may_match`, searched once over many records: besides a stem
# (searched in the lower-cased bytes), every byte string that makes `record_may_match` look
# further than its first line -- markers, references, look-alike letters, mixed markup.
_SUSPECT_BYTES = (b"&#", b"-->", b"]]>", *(bad for bad, _ in LOOKALIKES))
# Bytes deleted before looking for the rarer strings of _SUSPECT_BYTES (none of them is made of
# these alone, so a string survives the deletion as its remaining bytes, in order).
_PLAIN_BYTES = (
    bytes(range(ord("a"), ord("z") + 1)) + bytes(range(ord("A"), ord("Z") + 1)) + b'0123456789 \n\t\r<>/=".,;:()'
)
_SUSPECT = re.compile(rb"<(?:[!?]|(?<=[^>\s]<)[^/]|/[^>]*>(?:[^<\s]|<[^/]))")  # <!, <? and _MIXED
MAX_RECORD = 32 * 1024 * 1024  # larger: passed to the parser, whose own bounds apply


def _decode_ref(match: re.Match) -> bytes:
    hexa, decimal = match.groups()
    code = int(hexa, 16) if hexa else int(decimal)
    try:
        return chr(code).encode("utf-8", "surrogatepass")
    except (ValueError, OverflowError):
        return match.group(0)


def record_may_match(record: bytes) -> bool:
    """False only when no field of this `<PubmedArticle>` element can hold a ketamine stem."""
    low = record.lower()
    if any(stem in low for stem in STEMS):
        return True
    if any(marker in record for marker in _NEVER_DROP):
        return True
    hidden = b"&#" in record or _MIXED.search(record) is not None or any(bad in record for bad, _ in LOOKALIKES)
    if not hidden:
        return False
    # The slow way: the text as the parser reads it (markup out, references and look-alikes in).
    text = _CHAR_REF.sub(_decode_ref, _TAG.sub(b"", record))
    for bad, good in LOOKALIKES:
        text = text.replace(bad, good)
    text = text.lower()
    return any(stem in text for stem in STEMS)


def _filterable_encoding(head: bytes) -> bool:
    declared = re.match(rb"\s*<\?xml[^>]*encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']", head)
    if declared is None:
        return not head.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00", b"\x4c\x6f\xa7\x94"))
    return declared.group(1).lower() in {b"utf-8", b"utf8", b"us-ascii", b"ascii", b"iso-8859-1", b"latin-1", b"latin1"}


class _ReadAhead:
    """`source.read(size)` in a thread, a few reads ahead: gunzipping releases the GIL, so a
    gzip file is decompressed on one core while the prefilter searches on another. What the
    thread's read raises is raised by `read`, in the reader's thread."""

    AHEAD = 4

    def __init__(self, source: io.BufferedIOBase, size: int):
        self._reads: queue.Queue = queue.Queue(self.AHEAD)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(source, size), name="prefilter-read", daemon=True)
        self._thread.start()

    def _run(self, source: io.BufferedIOBase, size: int) -> None:
        try:
            while not self._stop.is_set():
                data = source.read(size)
                self._put(data)
                if not data:
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, who raises it
            self._put(exc)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._reads.put(item, timeout=0.1)
                return
            except queue.Full:
                continue  # the reader is behind, or has stopped reading (then close() stops us)

    def read(self) -> bytes:
        item = self._reads.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Stop reading (the source must stay open until this returns)."""
        self._stop.set()
        self._thread.join()


class TopicPrefilter(io.RawIOBase):
    """A PubMed XML byte stream without the records that cannot match the topic.

    Everything else -- the declaration, the root, DeleteCitation blocks, the kept records --
    passes through byte for byte. `dropped` counts the records left out so far. With
    `read_ahead`, the source is read in a thread (`_ReadAhead`); close the prefilter before
    the source."""

    CHUNK = 1024 * 1024

    def __init__(self, source: io.BufferedIOBase, *, read_ahead: bool = False):
        self.source = source
        self._ahead: _ReadAhead | None = None
        self._read_ahead = read_ahead
        self.dropped = 0
        self._pending = bytearray()  # read, not yet judged
        self._out = bytearray()  # judged, not yet handed on
        self._eof = False
        self._passthrough: bool | None = None  # decided from the document's first bytes
        self._root_seen = False  # an element (the root) started in what was handed on
        self._last_byte = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._out and not (self._eof and not self._pending):
            self._advance()
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        del self._out[:n]
        return n

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead.close()
            self._ahead = None
        super().close()

    def _read_source(self) -> bytes:
        if not self._read_ahead:
            return self.source.read(self.CHUNK)
        if self._ahead is None:
            self._ahead = _ReadAhead(self.source, self.CHUNK)
        return self._ahead.read()

    def _advance(self) -> None:
        if not self._eof:
            chunk = self._read_source()
            if chunk:
                self._pending += chunk
            else:
                self._eof = True
        if self._passthrough is None and (len(self._pending) >= 512 or self._eof):
            self._passthrough = not _filterable_encoding(bytes(self._pending[:512]))
        if self._passthrough is None:
            return
        if self._passthrough:
            self._out += self._pending
            self._pending.clear()
            return
        self._judge_complete_records()
        if self._eof:
            self._out += self._pending
            self._pending.clear()

    def _judge_complete_records(self) -> None:
        pending, position = self._pending, 0
        spans: list[tuple[int, int]] = []  # the complete records in `pending`, in order
        while True:
            start = pending.find(START, position)
            if start < 0:
                break
            end = pending.find(END, start + len(START))
            if end < 0:
                break
            if not self._root_seen and not spans:
                self._emit(pending[position:start])
                if not self._root_seen:
                    # A record that is the document's root (a lone <PubmedArticle>) is never dropped:
                    # the parser needs a root. Any element started before it is the root.
                    self._out += pending[start:]
                    pending.clear()
                    self._passthrough = True
                    return
                del pending[:start]
                start, end = 0, end - start
            position = end + len(END)
            spans.append((start, position))
        position = self._judge(spans)
        if start < 0:
            # Hold back a tail that may be the beginning of a start tag cut by the read.
            keep = max(position, len(pending) - len(START) + 1)
            self._emit(pending[position:keep])
            del pending[:keep]
            return
        self._emit(pending[position:start])
        del pending[:start]
        if len(pending) > MAX_RECORD:  # no end in sight: the parser judges the rest
            self._passthrough = True

    def _judge(self, spans: list[tuple[int, int]]) -> int:
        """Hand on or drop the records at `spans` of `pending` (and what lies between them);
        return where the last one ends. Every record is judged by `record_may_match`, but only
        records with a hit of `_SUSPECT` or a stem need it: the rest cannot match (see there)."""
        if not spans:
            return 0
        pending = self._pending
        last = spans[-1][1]
        starts = [start for start, _ in spans]
        ends = [end for _, end in spans]
        suspect = bytearray(len(spans))
        # Searched in place, up to the end of the last record (what follows waits for more bytes).
        # The rarer byte strings are looked for in what is left of the bytes without their ASCII
        # letters, digits, spaces and markup (a few per cent of them, one pass); only where that
        # holds one (or its parts run together) are the bytes searched for it.
        residue = pending.translate(None, _PLAIN_BYTES)
        rare = [needle for needle in _SUSPECT_BYTES if needle.translate(None, _PLAIN_BYTES) in residue]
        find_lowered = pending.lower().find  # lower-cased once per read, searched for every stem
        searches = [(find_lowered, stem) for stem in STEMS] + [(pending.find, needle) for needle in rare]
        for find, needle in searches:
            at = find(needle, spans[0][0], last)
            while at >= 0:
                at = self._mark(suspect, starts, ends, at, at + len(needle))
                at = find(needle, at, last)
        match = _SUSPECT.search(pending, spans[0][0], last)
        while match is not None:
            match = _SUSPECT.search(pending, self._mark(suspect, starts, ends, match.start(), match.end()), last)
        out, position = self._out, 0
        for (start, end), flagged in zip(spans, suspect):
            out += pending[position:start]  # (the root has been seen: _emit's check is done)
            if flagged and record_may_match(bytes(pending[start:end])):
                out += pending[start:end]
            else:
                self.dropped += 1
            position = end
        return last

    @staticmethod
    def _mark(suspect: bytearray, starts: list[int], ends: list[int], hit: int, hit_end: int) -> int:
        """Flag every record the hit [hit, hit_end) overlaps; return where to search on from
        (past the last record flagged: one hit is enough to judge a record the slow way)."""
        index = max(0, bisect.bisect_right(starts, hit) - 1)
        resume = hit + 1
        while index < len(starts) and starts[index] < hit_end:
            if ends[index] > hit:
                suspect[index] = 1
                resume = max(resume, ends[index])
            index += 1
        return resume

    def _emit(self, data) -> None:
        """Hand `data` on (it is not a record), noting whether an element has started in it."""
        if not self._root_seen and data:
            self._root_seen = re.search(rb"<[A-Za-z_]", self._last_byte + bytes(data)) is not None
            self._last_byte = bytes(data[-1:])
        self._out += data
