"""Benchmark: swap an attached XDP counter 20 times under a steady packet stream; count what slips by.

For each way of swapping, in one run and on one veth (host side in its own namespace, native mode):
  link      ebpf.deploy's manager (plugins/module_utils/_xdp.py, called in-process, the same code the
            module runs: lock, read, plan, bpf_link_update on the pinned link)
  netlink   the same manager with method=netlink (IFLA_XDP with XDP_FLAGS_REPLACE)
  ip-off-on `ip link set dev X xdp off` then `ip link set dev X xdp pinned ...` (detach, then attach)
  tcx       bpf_attach's manager (plugins/module_utils/_attach.py, in-process) on tcx ingress: the
            deployment's current version alternates, the manager updates the tcx link in place

A bounded UDP stream (200k packets) flows from the peer namespace to the host side while the program
is swapped between two loaded versions that share the pinned `pkt_count` map. Compared per variant:
packets sent, packets counted by the programs (map delta), packets received by the interface
(rx delta) and "passed uncounted" = rx delta - counted, i.e. packets that met no program.

    python tests/bench/bench_xdp_swap.py [--packets N] [--swaps N] [--pps N] [--mode native|generic]

Prints a table and writes build/bench/xdp_swap.json.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for extra in (REPO, REPO / ".build" / "collections"):   # also run as a script, outside pytest
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from tests.integration import hooks_helpers as hh  # noqa: E402
from tests.integration import xdp_helpers as h  # noqa: E402
from ansible_collections.ebpf.deploy.plugins.module_utils import _xdp as xdp  # noqa: E402

BPF_DIR = Path(os.environ.get("EBPF_DEPLOY_BPF_DIR", REPO / "build" / "bpf"))
OUT = REPO / "build" / "bench" / "xdp_swap.json"
IP_MODE_WORD = {"native": "xdpdrv", "generic": "xdpgeneric"}


class Swapper:
    """attach(version) before the stream, swap(version) during it, detach() after."""

    name = ""
    how = ""

    def __init__(self, lab: h.VethLab, pins: dict, root: Path, mode: str):
        self.lab, self.pins, self.root, self.mode = lab, pins, root, mode

    def attach(self, version: str) -> None:
        self.swap(version)

    def swap(self, version: str) -> None:
        raise NotImplementedError

    def detach(self) -> None:
        raise NotImplementedError


class ManagerSwapper(Swapper):
    how = "ebpf.deploy manager in-process (_xdp.XdpManager.run: lock, read, plan, act)"

    def __init__(self, *args, method: str):
        super().__init__(*args)
        self.method = method
        self.name = method

    def _run(self, **kw) -> dict:
        request = xdp.Request(interface=self.lab.host_if, netns=self.lab.host_ns, bpffs_root=str(self.root),
                              mode=self.mode, method=self.method, **kw)
        return xdp.XdpManager(request).run().as_dict()

    def swap(self, version: str) -> None:
        # force: the bench's programs are pinned outside any deployment, so a netlink attachment of
        # one carries no owner the next run could recognise (a deployment's would); the swap itself
        # is the same replace (XDP_FLAGS_REPLACE / link update) either way
        result = self._run(pin=str(self.pins[version]), force=True)
        assert result["action"] in ("attach", "replace"), result

    def detach(self) -> None:
        self._run(state="absent", force=True)


class TcxSwapper(Swapper):
    """tcx ingress: bpf_attach's manager makes the link run the deployment's current version, which
    alternates between two loads of tcx_counter (its pkt_count pinned once, shared)."""
    name = "tcx"
    how = "ebpf.deploy bpf_attach manager in-process (_attach.AttachManager.run: BPF_LINK_UPDATE of the tcx link)"

    def __init__(self, lab: h.VethLab, loaded: "hh.Loaded", root: Path):
        super().__init__(lab, {}, root, "tcx")
        self.loaded = loaded

    def _run(self, **kw) -> dict:
        from ansible_collections.ebpf.deploy.plugins.module_utils import _attach
        params = {"deployment": self.loaded.name, "program": "tcx_count", "hook": "tcx_ingress",
                  "interface": self.lab.host_if, "netns": self.lab.host_ns, "bpffs_root": str(self.root), **kw}
        return _attach.AttachManager(_attach.Request.from_params(params)).run().as_dict()

    VERSIONS = {"v1": "0000000000a1", "v2": "0000000000a2"}   # a deployment's versions are 12 hex digits

    def swap(self, version: str) -> None:
        self.loaded.use(self.VERSIONS[version])
        result = self._run()
        assert result["action"] in ("attach", "update"), result

    def detach(self) -> None:
        self._run(state="absent")


class IpOffOnSwapper(Swapper):
    name = "ip-off-on"
    how = "`ip link set dev X <mode> off` then `ip link set dev X <mode> pinned P` (subprocesses)"

    def swap(self, version: str) -> None:
        self.detach()
        self.lab.ip_link(IP_MODE_WORD[self.mode], "pinned", str(self.pins[version]))

    def attach(self, version: str) -> None:
        self.lab.ip_link(IP_MODE_WORD[self.mode], "pinned", str(self.pins[version]))

    def detach(self) -> None:
        self.lab.ip_link(IP_MODE_WORD[self.mode], "off")


def measure(lab: h.VethLab, swapper: Swapper, map_pin: Path, *, packets: int, swaps: int, pps: float) -> dict:
    swapper.attach("v1")
    duration = packets / pps
    c0, r0 = h.map_counter(map_pin), lab.host_counters()
    sender = lab.start_sender(packets, pps=pps)
    t0 = time.monotonic()
    times = []
    try:
        time.sleep(min(0.3, duration / 10))
        interval = (duration * 0.8) / swaps
        for index in range(swaps):
            start = time.monotonic()
            swapper.swap("v2" if index % 2 == 0 else "v1")
            times.append(time.monotonic() - start)
            time.sleep(max(0.0, interval - times[-1]))
        last_swap_done = time.monotonic() - t0
        out, err = sender.communicate(timeout=duration * 5 + 30)
        if sender.returncode != 0:
            raise RuntimeError(f"sender failed: {err}")
    finally:
        if sender.poll() is None:
            sender.kill()  # our own child
            sender.wait()
    time.sleep(0.1)
    sent, elapsed = int(out.split()[0]), float(out.split()[1])
    counted = h.map_counter(map_pin) - c0
    r1 = lab.host_counters()
    swapper.detach()
    received = r1["rx_packets"] - r0["rx_packets"]
    return {
        "method": swapper.name,
        "how": swapper.how,
        "packets_sent": sent,
        "packets_received": received,
        "packets_counted": counted,
        "passed_uncounted": received - counted,
        "rx_dropped": r1["rx_dropped"] - r0["rx_dropped"],
        "swaps": len(times),
        "swap_ms_mean": round(statistics.mean(times) * 1000, 2),
        "swap_ms_max": round(max(times) * 1000, 2),
        "stream_seconds": round(elapsed, 2),
        "swaps_within_stream": last_swap_done < elapsed,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--swaps", type=int, default=20)
    parser.add_argument("--pps", type=float, default=50_000)
    parser.add_argument("--mode", choices=["native", "generic"], default="native")
    parser.add_argument("--out", type=Path, default=OUT)
    opts = parser.parse_args(argv if argv is not None else [])

    root = Path("/sys/fs/bpf") / f"ebpfd_bench_{secrets.token_hex(4)}"
    rows = []
    lab = h.VethLab(tag="xb")
    try:
        with lab:
            map_dir = root / "maps"
            pins = {"v1": root / "v1" / "xdp_packet_counter", "v2": root / "v2" / "xdp_packet_counter"}
            h.load_xdp(BPF_DIR / "counter.bpf.o", pins["v1"], maps_dir=map_dir)
            h.load_xdp(BPF_DIR / "counter_v2.bpf.o", pins["v2"], maps_dir=root / "maps_v2",
                       reuse={"pkt_count": map_dir / "pkt_count"})
            swappers = [ManagerSwapper(lab, pins, root, opts.mode, method="link"),
                        ManagerSwapper(lab, pins, root, opts.mode, method="netlink"),
                        IpOffOnSwapper(lab, pins, root, opts.mode)]
            for swapper in swappers:
                rows.append(measure(lab, swapper, map_dir / "pkt_count",
                                    packets=opts.packets, swaps=opts.swaps, pps=opts.pps))
            tcx = hh.Loaded(root, f"ebpfd_bench_tcx_{secrets.token_hex(3)}")
            try:
                for version in TcxSwapper.VERSIONS.values():
                    tcx.load(version, BPF_DIR / "tcx_counter.bpf.o", {"tcx_count": hh.SCHED_CLS})
                rows.append(measure(lab, TcxSwapper(lab, tcx, root), tcx.dep.maps_dir / "pkt_count",
                                    packets=opts.packets, swaps=opts.swaps, pps=opts.pps))
            finally:
                tcx.cleanup()
    finally:
        h.remove_tree(root)
        h.remove_tree(Path(xdp.STATE_DIR) / str(root).strip("/").replace("/", "_"))
        for lock in (Path(xdp.STATE_DIR).parent / "locks").glob(f"xdp-{lab.host_ns}-*.lock"):
            lock.unlink()  # the interface lock of these pin-only runs

    header = (f"{'method':<10} {'sent':>8} {'received':>9} {'counted':>9} {'passed uncounted':>17} {'target':>7} "
              f"{'swap ms (mean/max)':>19}")
    print(f"XDP swap benchmark: {opts.packets} UDP packets at {opts.pps:.0f} pps, {opts.swaps} swaps, "
          f"mode {opts.mode}, veth between two namespaces")
    print(header)
    print("-" * len(header))
    for row in rows:
        # the target is the collection's (0 for its link and netlink swaps); ip off/on is the comparison
        target = "0" if row["method"] in ("link", "netlink", "tcx") else "-"
        print(f"{row['method']:<10} {row['packets_sent']:>8} {row['packets_received']:>9} {row['packets_counted']:>9} "
              f"{row['passed_uncounted']:>17} {target:>7} {row['swap_ms_mean']:>10}/{row['swap_ms_max']:<8}")
    report = {"packets": opts.packets, "swaps": opts.swaps, "pps": opts.pps, "mode": opts.mode,
              "kernel": os.uname().release, "results": rows}
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {opts.out}")
    module_rows = [row for row in rows if row["method"] in ("link", "netlink", "tcx")]
    met = all(row["passed_uncounted"] == 0 for row in module_rows)
    print(f"target met (0 packets uncounted during the collection's swaps): {met}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
