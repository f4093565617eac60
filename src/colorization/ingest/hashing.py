"""Perceptual fingerprints of photos and near-duplicate search.

Two fingerprints per photo:

* the 64-bit *difference hash* (:func:`dhash`): the image in 8-bit gray, resized to 9x8 with
  bilinear filtering; bit ``i`` is set when the pixel right of it is brighter, row-major, first bit
  most significant. It is the same hash the evaluation blocklist (``shared/eval_blocklist``) uses,
  so a hash list written by anyone with that definition can be checked against.
* a 16x16 gray *thumbnail* (:func:`thumbnail`), which confirms a hash match: low-texture photos
  (skies, snow, plain backgrounds) often share a hash without being the same photo.

:class:`HashIndex` finds, among many stored hashes, those within a small Hamming distance of a new
one by multi-index hashing (the 64 bits split into ``distance + 1`` chunks: two hashes within the
distance agree exactly on at least one chunk), so checking 300,000 photos against each other takes
seconds, not hours. :func:`min_distances` checks many hashes against a short list (evaluation
photos) by brute force, in NumPy.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
from PIL import Image

__all__ = [
    "THUMB_SIDE",
    "dhash",
    "mirror_dhash",
    "thumbnail",
    "thumbnails_match",
    "HashIndex",
    "min_distances",
    "read_hash_list",
]

THUMB_SIDE = 16
"""Side of the gray confirmation thumbnail (:func:`thumbnail`)."""


def _gray9x8(img: Image.Image) -> np.ndarray:
    small = img.convert("RGB").convert("L").resize((9, 8), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.int16)


def _bits_to_int(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits.astype(np.uint8).ravel()).tobytes(), "big")


def dhash(img: Image.Image) -> int:
    """64-bit difference hash of ``img`` (any mode), as an ``int`` in ``[0, 2**64)``."""
    a = _gray9x8(img)
    return _bits_to_int(a[:, 1:] > a[:, :-1])


def mirror_dhash(img: Image.Image) -> int:
    """:func:`dhash` of ``img`` mirrored left-right."""
    return dhash(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT))


def thumbnail(img: Image.Image) -> np.ndarray:
    """``(THUMB_SIDE, THUMB_SIDE)`` uint8 gray thumbnail (box filter: robust to rescaling)."""
    small = img.convert("RGB").convert("L").resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8)


def thumbnails_match(a: np.ndarray, b: np.ndarray, max_mean_abs: float) -> bool:
    """Whether two :func:`thumbnail` arrays differ by at most ``max_mean_abs`` gray levels on average."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()) <= max_mean_abs


def _chunks(distance: int) -> list[tuple[int, int]]:
    """``distance + 1`` bit ranges ``(shift, width)`` covering 64 bits as evenly as possible."""
    n = distance + 1
    widths = [64 // n + (1 if i < 64 % n else 0) for i in range(n)]
    out, shift = [], 64
    for w in widths:
        shift -= w
        out.append((shift, w))
    return out


class HashIndex:
    """Stored 64-bit hashes, searchable by Hamming distance up to ``distance``.

    Args:
        distance: the largest Hamming distance :meth:`query` finds (0..15).

    Items are ``(hash, payload)``; :meth:`query` returns the payloads of stored hashes within the
    distance of a hash, nearest first.
    """

    def __init__(self, distance: int) -> None:
        if not 0 <= distance <= 15:
            raise ValueError(f"distance must be in 0..15, got {distance}")
        self.distance = distance
        self._chunks = _chunks(distance)
        self._tables: list[defaultdict[int, list[int]]] = [defaultdict(list) for _ in self._chunks]
        self._hashes: list[int] = []
        self._payloads: list[object] = []

    def __len__(self) -> int:
        return len(self._hashes)

    def add(self, h: int, payload: object = None) -> None:
        """Store hash ``h`` (``0 <= h < 2**64``) with ``payload``."""
        i = len(self._hashes)
        self._hashes.append(h)
        self._payloads.append(payload)
        for table, (shift, width) in zip(self._tables, self._chunks, strict=True):
            table[(h >> shift) & ((1 << width) - 1)].append(i)

    def query(self, h: int) -> list[tuple[int, object]]:
        """``[(distance, payload), ...]`` of the stored hashes within :attr:`distance` of ``h``."""
        seen: set[int] = set()
        found: list[tuple[int, int]] = []
        for table, (shift, width) in zip(self._tables, self._chunks, strict=True):
            for i in table.get((h >> shift) & ((1 << width) - 1), ()):
                if i in seen:
                    continue
                seen.add(i)
                d = (self._hashes[i] ^ h).bit_count()
                if d <= self.distance:
                    found.append((d, i))
        found.sort()
        return [(d, self._payloads[i]) for d, i in found]


def min_distances(hashes: Iterable[int], reference: Iterable[int]) -> np.ndarray:
    """For each hash, the smallest Hamming distance to any ``reference`` hash.

    Returns:
        ``(N,)`` int array; 64 for every hash when ``reference`` is empty.
    """
    h = np.fromiter((int(x) for x in hashes), dtype=np.uint64)
    ref = np.fromiter((int(x) for x in reference), dtype=np.uint64)
    out = np.full(h.shape, 64, dtype=np.int64)
    if ref.size == 0 or h.size == 0:
        return out
    step = max(1, 4_000_000 // ref.size)
    for s in range(0, h.size, step):
        block = np.bitwise_count(h[s : s + step, None] ^ ref[None, :])
        out[s : s + step] = block.min(axis=1)
    return out


def read_hash_list(path: str) -> list[int]:
    """Hashes from a text file of one hexadecimal 64-bit number a line (blank lines and ``#``
    comments skipped); a malformed line raises ``ValueError`` naming it."""
    out: list[int] = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                value = int(text, 16)
            except ValueError:
                raise ValueError(f"{path}:{n}: not a hexadecimal hash: {text!r}") from None
            if not 0 <= value < 2**64:
                raise ValueError(f"{path}:{n}: hash out of 64-bit range: {text!r}")
            out.append(value)
    return out
