"""Lab benchmark: 100 hosts up, ansible ping over SSH to all of them, traffic rate, teardown.

    python -m tests.bench.bench_lab [--hosts 100] [--forks 20]     (as root, from the repository root)

The pings use forks 20, as ansible.cfg does: on two cores, 100 forks made a 100-host ping slower
(about 50 s against 40 s), not faster.

Prints the figures and writes them to build/bench/lab.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from tests.lab import labctl

HOSTS = 100
FORKS = 20
PACKETS = 200_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=HOSTS)
    parser.add_argument("--forks", type=int, default=FORKS)
    opts = parser.parse_args(argv if argv is not None else [])
    lab = labctl.new_lab(count=opts.hosts)
    figures: dict = {"hosts": opts.hosts, "forks": opts.forks, "prefix": lab.prefix, "mgmt_network": lab.mgmt_network}
    try:
        t0 = time.monotonic()
        up = lab.up()
        figures["up_seconds"] = round(time.monotonic() - t0, 3)
        figures["up_script_seconds"] = up["seconds"]

        t0 = time.monotonic()
        again = lab.up()
        figures["up_again_seconds"] = round(time.monotonic() - t0, 3)
        figures["up_again_changed"] = again["changed"]

        t0 = time.monotonic()
        proc = lab.ansible("lab", "ansible.builtin.ping", None, "--forks", str(opts.forks), timeout=900)
        figures["ansible_ping_seconds"] = round(time.monotonic() - t0, 3)
        results = labctl.parse_oneline(proc.stdout)
        figures["ansible_ping_ok"] = sum(r.get("ping") == "pong" for r in results.values())

        t0 = time.monotonic()
        proc = lab.ansible("lab", "ansible.builtin.ping", None, "--forks", str(opts.forks), timeout=900)
        figures["ansible_ping_warm_seconds"] = round(time.monotonic() - t0, 3)  # ControlPersist masters up

        rx0 = lab.rx_packets(1)
        traffic = lab.traffic(1, count=PACKETS)
        figures["traffic_packets"] = traffic["sent"]
        figures["traffic_seconds"] = traffic["seconds"]
        figures["traffic_pps"] = traffic["pps"]
        figures["traffic_rx_packets"] = lab.rx_packets(1) - rx0
    finally:
        t0 = time.monotonic()
        down = lab.down()
        figures["down_seconds"] = round(time.monotonic() - t0, 3)
        figures["down_script_seconds"] = down["seconds"]
    out = labctl.REPO / "build" / "bench" / "lab.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    print(f"written to {out.relative_to(labctl.REPO)}")
    ok = figures.get("ansible_ping_ok") == opts.hosts and figures.get("traffic_packets") == PACKETS
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
