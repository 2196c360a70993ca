"""A checker for pycocotools' compressed RLE strings (``maskApi.c: rleFrString``).

Only validates: pycocotools' decoder trusts the string and writes ``sum(counts)``
bytes into an ``h * w`` buffer, so a bad string must be refused before it gets
there. The format: each count is a run of 6-bit characters (``c - 48``), 5 data
bits each, bit 0x20 = "more follows", bit 0x10 of the last = sign; from the
fourth count on (``m > 2``, as the C code has it) the value is a delta to the
count two places back.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def check_rle_bytes(s, total):
    """``(code, value)``: 0 ok; 1 bad character (position); 2 truncated; 3 count out of
    range (the count); 4 counts do not sum to ``total`` (the sum)."""
    n = s.shape[0]
    cnts = np.empty(n + 1, np.int64)
    m = 0
    p = 0
    acc = 0
    while p < n:
        x = 0
        k = 0
        more = True
        while more:
            if p >= n:
                return 2, 0
            b = np.int64(s[p])
            if b < 48 or b > 111:
                return 1, p
            c = b - 48
            if k > 6:  # beyond 35 bits: no valid count needs it
                return 3, -1
            x |= (c & 0x1F) << (5 * k)
            more = (c & 0x20) != 0
            p += 1
            k += 1
            if not more and (c & 0x10) != 0:
                x |= np.int64(-1) << (5 * k)
        if m > 2:
            x += cnts[m - 2]
        if x < 0 or x >= 4294967296:
            return 3, x
        cnts[m] = x
        m += 1
        acc += x
    if acc != total:
        return 4, acc
    return 0, 0
