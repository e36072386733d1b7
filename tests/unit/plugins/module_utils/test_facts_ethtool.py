"""ethtool -S through SIOCETHTOOL, against a fake driver whose statistics set changes between calls.

The kernel fills ETHTOOL_GSTRINGS / ETHTOOL_GSTATS with as many entries as the driver has at that
moment, whatever count the request carried: a buffer sized from the earlier ETHTOOL_GSSET_INFO is
written past its end when the driver's count grew (channels added, say).
"""
from __future__ import annotations

import struct

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils import _facts


class FakeDriver:
    """Answers the three ioctls like net/ethtool/ioctl.c; ``counts`` is the driver's stat count at
    each successive call. Writing past the caller's buffer is reported, not done."""

    def __init__(self, counts):
        self.counts = list(counts)
        self.calls = 0

    def count(self) -> int:
        value = self.counts[min(self.calls, len(self.counts) - 1)]
        self.calls += 1
        return value

    def __call__(self, _sock, _ifname, buf) -> None:
        (cmd,) = struct.unpack_from("I", buf.raw, 0)
        n = self.count()
        if cmd == _facts.ETHTOOL_GSSET_INFO:
            buf[16:20] = struct.pack("I", n)
            return
        if cmd == _facts.ETHTOOL_GSTRINGS:
            size, head = 12 + n * _facts.ETH_GSTRING_LEN, struct.pack("III", cmd, 1, n)
            body = b"".join(f"stat_{i}".encode().ljust(_facts.ETH_GSTRING_LEN, b"\0") for i in range(n))
        else:
            size, head = 8 + 8 * n, struct.pack("II", cmd, n)
            body = b"".join(struct.pack("Q", 100 + i) for i in range(n))
        if size > len(buf):
            raise AssertionError(f"the kernel wrote {size} bytes into a {len(buf)}-byte buffer")
        buf[0:size] = head + body


@pytest.mark.parametrize("counts, expected", [
    ([2, 2, 2], 2),
    ([2, 3, 3], 3),              # grew after GSSET_INFO: both replies say 3
    ([2, 2, 40], 40),            # grew between GSTRINGS and GSTATS: read again, consistent at 40
])
def test_a_statistics_set_that_grows_between_calls_is_never_overrun(monkeypatch, counts, expected):
    driver = FakeDriver(counts)
    monkeypatch.setattr(_facts, "_ethtool", driver)
    stats = _facts.ethtool_stats("ebpfd0")
    assert stats == {f"stat_{i}": 100 + i for i in range(expected)}
