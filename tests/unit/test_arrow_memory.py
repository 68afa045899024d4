"""The C allocator keeps giving large blocks back once connectorx's reads have fixed its mmap
threshold (`sources.arrow_memory`). glibc's default raises the threshold to the size of each
mapped block it frees: the contrast the test needs, seen in a fresh interpreter each."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Frees a 4 MiB block, then asks for 2 MiB: is that block a mapping of its own (hblks)?
PROBE = """
import ctypes, sys
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "fixed":
    from ewallet_etl.sources.arrow_memory import give_back_large_buffers
    assert give_back_large_buffers() is True
libc.free(libc.malloc(4 << 20))
before = libc.mallinfo2().hblks
block = libc.malloc(2 << 20)
print(libc.mallinfo2().hblks - before)
libc.free(block)
"""


def _mapped_apart(mode: str) -> bool:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], check=True, capture_output=True,
                         text=True).stdout
    return out.strip() == "1"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_large_blocks_stay_mapped_apart_once_the_threshold_is_fixed():
    assert not _mapped_apart("default")  # glibc raised its threshold to 4 MiB
    assert _mapped_apart("fixed")
