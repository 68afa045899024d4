"""Where connectorx's record batches live: the C allocator, and when it gives them back.

connectorx builds every record batch it reads with the C allocator (glibc's malloc here), in
its reader threads. glibc starts by giving each block over 128 KiB a mapping of its own,
returned to the system when freed, but raises that threshold every time it frees such a block
(up to 32 MiB): after the first batches, a batch's buffers come from the allocator's arenas
and stay there once freed, fragmented across the arenas of the reader threads. Measured on a
10M-row chDB load read in pages: ~170-190 MiB of arenas held for ~60 MiB in use. A fixed
threshold (`mallopt(M_MMAP_THRESHOLD)`, glibc's documented tunable, the same as the
`MALLOC_MMAP_THRESHOLD_` variable) keeps every buffer over it a mapping of its own: ~75-100
MiB of arenas for the same load, for ~1 s more system time on 10M rows (bench/README.md).
"""

from __future__ import annotations

import ctypes
import functools
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's <malloc.h>
# The blocks at or over this size each get a mapping of their own. A 100,000-row batch's
# larger buffers (the ids' text, amounts, times) are 0.8-4 MB.
MMAP_THRESHOLD_BYTES = 1 << 20


@functools.cache
def give_back_large_buffers() -> bool:
    """Fix the C allocator's mmap threshold, once per process; False where there is no glibc
    `mallopt` (another C library: nothing is changed)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    log.debug("C allocator: blocks over %d bytes mapped apart: %s", MMAP_THRESHOLD_BYTES, done)
    return done
