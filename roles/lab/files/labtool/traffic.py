"""``traffic``: a bounded number of UDP datagrams from a host's peer namespace to the host.

Part of the lab tool (package docstring: the whole picture). Standard library only.
"""
from __future__ import annotations

import socket
import time
from pathlib import Path

from labtool.errors import LabError
from labtool.namespaces import in_netns
from labtool.naming import config_from_state, load_state


def cmd_traffic(lab_dir: Path, host_name: str, count: int, rate: float | None, size: int, port: int) -> dict:
    state = load_state(lab_dir)
    if not state:
        raise LabError(f"no lab in {lab_dir} (run `up` first)")
    cfg = config_from_state(lab_dir, state["config"])
    # a VM's peer namespace, peer and data addresses have the same names as a netns host's
    hosts = {h.name: h for h in [*cfg.hosts, *cfg.vms]} | {str(h.index): h for h in cfg.hosts}
    host = hosts.get(host_name)
    if host is None:
        raise LabError(f"unknown lab host {host_name!r}; known: {sorted(h.name for h in [*cfg.hosts, *cfg.vms])}")
    if count < 0 or size < 0 or size > 1472:
        raise LabError("count must be >= 0 and size within 0..1472")
    payload = b"ebpfd" + b"\0" * max(0, size - 5) if size >= 5 else b"x" * size
    dest = (host.data_address, port)
    sent = errors = 0
    with in_netns(host.peer_ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        sock.bind((host.peer_address, 0))
    t0 = time.monotonic()
    try:
        send = sock.sendto
        if rate is None or rate <= 0:
            for _sent in range(count):
                try:
                    send(payload, dest)
                    sent += 1
                except OSError:
                    errors += 1
        else:
            burst = max(1, int(rate / 1000))
            while sent + errors < count:
                n = min(burst, count - sent - errors)
                for _sent in range(n):
                    try:
                        send(payload, dest)
                        sent += 1
                    except OSError:
                        errors += 1
                ahead = t0 + (sent + errors) / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
    finally:
        sock.close()
    seconds = time.monotonic() - t0
    return {"changed": sent > 0, "host": host.name, "from": f"{host.peer_ns} {host.peer_address}",
            "to": f"{host.data_address}:{port}", "requested": count, "sent": sent, "errors": errors,
            "payload_bytes": len(payload), "seconds": round(seconds, 4),
            "pps": round(sent / seconds) if seconds > 0 else None}
