"""MinHash signatures for a whole batch of documents at once, equal to datasketch's.

datasketch (scheme `affine32`, its default since 2.0) hashes each shingle to 32 bits,
pre-mixes it with the MurmurHash3 finalizer, and applies `num_perm` permutations
`a * h + b` in wrapping uint32 arithmetic; the signature is the per-permutation minimum.
Its default shingle hash is SHA-1, called once per shingle from Python, which is most
of its cost. Here a shingle is a window of tokens (a character for Chinese, a lowercased
word otherwise) and its hash is a polynomial over the tokens' ids (a character's code
point; a word's polynomial over its code points): computable for every window of a batch
with a few numpy operations, and, through `char_shingle_hash` and `word_shingle_hash`,
one shingle at a time as datasketch's `hashfunc`. The two agree
exactly (tested), so an index built either way is interchangeable; the permutations are
datasketch's own, taken from `MinHash(num_perm, seed).permutations`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import numpy as np
from datasketch import MinHash

from tinylm.corpus.language import written_in_characters

_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_MASK64 = (1 << 64) - 1
_WHITESPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")
_FMIX = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))
# Shingles per permutation block: 128 x 8192 uint32 is 4 MiB, close to what the caches
# hold; a block four times larger is ten times slower per shingle (docs/benchmarks.md).
_CHUNK = 1 << 13
# Code points per piece of a long text in `word_ids`: the powers cached for it take 16 MiB.
_PIECE = 1 << 20


def _geometric(ratio: int, count: int) -> np.ndarray:
    """`ratio ** i` mod 2**64 for i < count, by doubling: log2(count) vector multiplies."""
    values = np.ones(count, dtype=np.uint64)
    done = 1
    with np.errstate(over="ignore"):
        while done < count:
            step = min(done, count - done)
            values[done : done + step] = values[:step] * np.uint64(pow(ratio, done, 1 << 64))
            done += step
    return values


@functools.cache
def _powers(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Powers of the multiplier and of its inverse mod 2**64 (it is odd, so one exists)."""
    return _geometric(int(_MULTIPLIER), count), _geometric(pow(int(_MULTIPLIER), -1, 1 << 64), count)


def tokens(text: str, lang: str | None) -> list[str]:
    """Characters (whitespace removed) for Chinese and Japanese, which have no word breaks; lowercased words
    otherwise."""
    if written_in_characters(lang):
        return list(_WHITESPACE.sub("", text))
    return _WORD.findall(text.translate(_lowercase_map()))


@functools.cache
def _word_character_values() -> np.ndarray:
    """For every code point: one plus its lowercase form if regex `\\w` matches it (`isalnum()` or `_`), else 0.

    One lookup both finds the words and gives their folded letters' values. Lowercasing is per code point
    (a character whose lowercase is two code points, like U+0130, stays as it is), the
    same rule `tokens` applies, so the batch and scalar paths agree.
    """
    points = np.arange(0x110000, dtype=np.uint32)
    folded = np.fromiter((_lower_point(point) for point in range(0x110000)), dtype=np.uint32, count=0x110000)
    word = np.fromiter((chr(point).isalnum() for point in range(0x110000)), dtype=bool, count=0x110000) | (
        points == ord("_")
    )
    return np.where(word, folded + 1, 0).astype(np.uint32)


def _lower_point(point: int) -> int:
    lowered = chr(point).lower()
    return ord(lowered) if len(lowered) == 1 else point


@functools.cache
def _lowercase_map() -> dict[int, int]:
    """`str.translate` table of the per-code-point lowercasing above (only the points that change)."""
    return {point: lowered for point in range(0x110000) if (lowered := _lower_point(point)) != point}


def word_id(word: str) -> int:
    """A word's id: the polynomial of its code points (each plus one), lowest power first."""
    value, power = 0, 1
    for char in word:
        value = (value + (ord(char) + 1) * power) & _MASK64
        power = (power * int(_MULTIPLIER)) & _MASK64
    return value


def word_ids(text: str) -> np.ndarray:
    """The 64-bit ids of a text's lowercased words, computed without a Python loop over them.

    Words are the runs that regex `\\w+` would find, located with a lookup table over
    code points instead, which is three times faster on English articles. Long texts go
    in pieces cut between words, so the cached powers stay small.
    """
    values = _word_character_values()[np.frombuffer(text.encode("utf-32-le"), dtype="<u4")]
    pieces = [_word_ids(values[start:end]) for start, end in _pieces_between_words(values)]
    return np.concatenate(pieces) if len(pieces) > 1 else pieces[0]


def _pieces_between_words(values: np.ndarray) -> list[tuple[int, int]]:
    """Spans of at most `_PIECE` code points ending at a non-word character (longer only for a longer word)."""
    spans, start = [], 0
    while len(values) - start > _PIECE:
        gaps = np.flatnonzero(values[start : start + _PIECE] == 0)
        if len(gaps):
            end = start + int(gaps[-1]) + 1
        else:
            after = np.flatnonzero(values[start + _PIECE :] == 0)
            end = start + _PIECE + int(after[0]) + 1 if len(after) else len(values)
        spans.append((start, end))
        start = end
    return spans + [(start, len(values))] if start < len(values) or not spans else spans


def _word_ids(values: np.ndarray) -> np.ndarray:
    """Every word's polynomial from one running sum over the text.

    With each letter weighted by the multiplier's power at its offset in the text, a
    word's sum is its polynomial times the power at its start, which the inverse power
    removes: one cumsum for all words instead of per-word positions.
    """
    in_word = np.zeros(len(values) + 2, dtype=bool)
    np.not_equal(values, 0, out=in_word[1:-1])
    edges = np.flatnonzero(in_word[1:] != in_word[:-1])
    starts, ends = edges[0::2], edges[1::2]
    powers, inverses = _powers(max(_PIECE, len(values)))
    running = np.zeros(len(values) + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        np.cumsum(values * powers[: len(values)], out=running[1:])
        return (running[ends] - running[starts]) * inverses[starts]


def shingles(text: str, lang: str | None, n: int) -> list[bytes]:
    """The distinct shingles of a text as bytes, the form datasketch's `update_batch` takes.

    Characters join with nothing, words with one space; a text shorter than `n` tokens
    is one shingle of all of them, and an empty one has none.
    """
    items = tokens(text, lang)
    separator = "" if written_in_characters(lang) else " "
    windows = range(max(1, len(items) - n + 1)) if items else range(0)
    return list(dict.fromkeys(separator.join(items[i : i + n]).encode("utf-8") for i in windows))


def _fold(value: int) -> int:
    return (value ^ (value >> 32)) & 0xFFFFFFFF


def _polynomial(ids: Sequence[int]) -> int:
    value = 0
    for token_id in ids:
        value = (value * int(_MULTIPLIER) + token_id) & _MASK64
    return _fold(value)


def char_shingle_hash(shingle: bytes) -> int:
    """datasketch `hashfunc` for Chinese shingles: the scalar twin of the batch computation."""
    return _polynomial([ord(char) for char in shingle.decode("utf-8")])


def word_shingle_hash(shingle: bytes) -> int:
    """datasketch `hashfunc` for word shingles: the scalar twin of the batch computation."""
    return _polynomial([word_id(word) for word in shingle.decode("utf-8").split(" ")])


def _batch_token_ids(texts: Sequence[str], lang: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The token ids of many texts end to end, and each text's number of tokens.

    Chinese texts are encoded in one call: per-text numpy calls cost more than the work
    on a short paragraph.
    """
    if written_in_characters(lang):
        stripped = [_WHITESPACE.sub("", text) for text in texts]
        ids = np.frombuffer("".join(stripped).encode("utf-32-le"), dtype="<u4").astype(np.uint64)
        return ids, np.array([len(text) for text in stripped], dtype=np.int64)
    per_text = [word_ids(text) for text in texts]
    return np.concatenate(per_text), np.array([len(ids) for ids in per_text], dtype=np.int64)


def _window_hashes(ids: np.ndarray, lengths: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of the windows of `n` consecutive ids inside each text, text after text, and each text's count.

    A text shorter than `n` has one window of all its ids. The windows of the whole
    stream are hashed at once; those starting in a text's last `n - 1` ids run into the
    next text and are dropped.
    """
    long = lengths >= n
    counts = np.where(long, lengths - n + 1, np.minimum(lengths, 1))
    crossing = np.minimum(lengths, n - 1)
    crossing_starts = np.cumsum(lengths) - crossing
    dropped = np.repeat(crossing_starts - (np.cumsum(crossing) - crossing), crossing) + np.arange(crossing.sum())
    windows = max(len(ids) - n + 1, 0)
    value = ids[:windows].copy()
    with np.errstate(over="ignore"):
        for offset in range(1, n):
            np.multiply(value, _MULTIPLIER, out=value)
            np.add(value, ids[offset : offset + windows], out=value)
    keep = np.ones(windows, dtype=bool)
    keep[dropped[dropped < windows]] = False
    hashes = (value ^ (value >> np.uint64(32))).astype(np.uint32)[keep]
    short = np.flatnonzero(~long & (lengths > 0))
    if len(short):
        starts = np.cumsum(lengths) - lengths
        long_counts = np.where(long, counts, 0)
        before = (np.cumsum(long_counts) - long_counts)[short]
        values = [_polynomial(ids[starts[row] : starts[row] + lengths[row]].tolist()) for row in short]
        hashes = np.insert(hashes, before, np.array(values, dtype=np.uint32))
    return hashes, counts


def _fmix32(values: np.ndarray) -> np.ndarray:
    s1, m1, s2, m2, s3 = _FMIX
    values = values ^ (values >> s1)
    values = values * m1
    values = values ^ (values >> s2)
    values = values * m2
    return values ^ (values >> s3)


class MinHasher:
    """Signatures of many documents per numpy call, with datasketch's permutations."""

    def __init__(self, num_perm: int = 128, seed: int = 1) -> None:
        self.num_perm, self.seed = num_perm, seed
        a, b = MinHash(num_perm=num_perm, seed=seed).permutations
        self._a, self._b = a.astype(np.uint32)[:, None], b.astype(np.uint32)[:, None]
        self._buffer = np.empty((num_perm, _CHUNK), dtype=np.uint32)

    def signatures(self, texts: Sequence[str], langs: Sequence[str | None], zh_ngram: int, en_ngram: int) -> np.ndarray:
        """One row of `num_perm` uint32 per text; a text without shingles keeps all 0xFFFFFFFF, as in datasketch.

        Each language's texts are hashed as one stream of tokens; all shingles of the batch
        form one stream, permuted in fixed blocks that fit the
        caches whatever the documents' lengths; a document spanning blocks takes the
        minimum over them.
        """
        result = np.full((len(texts), self.num_perm), np.uint32(0xFFFFFFFF), dtype=np.uint32)
        rows, hashes, counts = [], [], []
        for chinese, n in ((True, zh_ngram), (False, en_ngram)):
            members = [row for row, lang in enumerate(langs) if written_in_characters(lang) == chinese]
            group = np.array(members, dtype=np.int64)
            if len(group):
                ids, lengths = _batch_token_ids([texts[row] for row in group], "zh" if chinese else None)
                group_hashes, group_counts = _window_hashes(ids, lengths, n)
                rows.append(group[group_counts > 0])
                hashes.append(group_hashes)
                counts.append(group_counts[group_counts > 0])
        if not rows or not sum(map(len, rows)):
            return result
        rows = np.concatenate(rows)
        stream = _fmix32(np.concatenate(hashes))
        bounds = np.concatenate(([0], np.cumsum(np.concatenate(counts))))
        for start in range(0, len(stream), _CHUNK):
            end = min(start + _CHUNK, len(stream))
            first = int(np.searchsorted(bounds, start, side="right")) - 1
            last = int(np.searchsorted(bounds, end, side="left"))
            segment_starts = np.maximum(bounds[first:last], start) - start
            permuted = self._buffer[:, : end - start]
            np.multiply(self._a, stream[None, start:end], out=permuted)
            np.add(permuted, self._b, out=permuted)
            minima = np.minimum.reduceat(permuted, segment_starts, axis=1).T
            block_rows = rows[first:last]
            result[block_rows] = np.minimum(result[block_rows], minima)
        return result
