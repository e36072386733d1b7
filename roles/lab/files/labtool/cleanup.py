"""``down`` and the teardown ``up`` uses when the prefix changes: processes, namespaces, links,
ssh masters and the lab's files.

Part of the lab tool (package docstring: the whole picture). Standard library only.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path

from labtool.commands import ip_json, run
from labtool.errors import LabError
from labtool.namespaces import netns_names
from labtool.naming import HOST_CACHE_DIR, HOST_FILES, HOST_STATE_DIR, HOSTS_DIR, lab_lock, LabConfig, load_state, LOCK_FILE, TOP_FILES
from labtool.netns_hosts import remove_hosts
from labtool.sshd import close_ssh_masters
from labtool.vm_hooks import lab_hooks
from labtool.vm_lab import teardown_vms


def remove_host_files(lab_dir: Path, name: str) -> bool:
    hdir = lab_dir / HOSTS_DIR / name
    removed = False
    for f in HOST_FILES + tuple(f + ".tmp" for f in HOST_FILES):
        with contextlib.suppress(FileNotFoundError):
            (hdir / f).unlink()
            removed = True
    for own in (HOST_STATE_DIR, HOST_CACHE_DIR):   # the host's record and bytecode cache go with it
        if (hdir / own).is_dir() and not (hdir / own).is_symlink():
            shutil.rmtree(hdir / own)
            removed = True
    with contextlib.suppress(FileNotFoundError, OSError):
        hdir.rmdir()
        removed = True
    return removed


def teardown(lab_dir: Path, prefix: str, state: dict, *, control_dirs: list[str], keep_files: bool = False,
             check: bool = False) -> dict:
    actions: list[str] = []
    cfgj = state.get("config", {})
    root_links = {d["ifname"]: d for d in ip_json(["link", "show"])}
    pat = re.compile(rf"^{re.escape(prefix)}-[hpm](\d+)$")
    indices = {int(m[1]) for n in list(netns_names()) + list(root_links) if (m := pat.match(n))}
    count = max(indices | {int(cfgj.get("count", 0))} | {0})
    cfg = LabConfig(lab_dir=lab_dir, count=count, prefix=prefix,
                    mgmt_network=cfgj.get("mgmt_network", "10.250.0.0/16"),
                    data_network=cfgj.get("data_network", "10.251.0.0/16"),
                    bridge=cfgj.get("bridge", True), ssh_port=int(cfgj.get("ssh_port", 22)))
    try:
        cfg.plan()
    except LabError:
        cfg.hosts = []
    hosts = [h for h in cfg.hosts if h.index in indices]
    vm_actions, survivors = teardown_vms(
        cfg.vm_options(), prefix, cfg.data_network, state.get("vms", {}), control_dirs, lab_hooks(), check=check)
    actions += vm_actions
    if check:
        actions += [f"would remove {h.name}" for h in hosts]
        if cfg.bridge_name in root_links:
            actions.append(f"would delete bridge {cfg.bridge_name}")
        return {"actions": actions, "survivors": []}
    actions += close_ssh_masters([h.mgmt_address for h in cfg.hosts], cfg.ssh_port, control_dirs)
    ended, more = remove_hosts(hosts)
    survivors += more
    if ended:
        actions.append(f"ended {ended} process(es) in lab namespaces")
    actions += [f"removed {h.name}" for h in hosts]
    if cfg.bridge_name in root_links:
        run(["ip", "link", "del", cfg.bridge_name], check=False)
        actions.append(f"deleted bridge {cfg.bridge_name}")
    if not keep_files:
        removed = False
        hosts_dir = lab_dir / HOSTS_DIR
        if hosts_dir.is_dir():
            for hdir in hosts_dir.iterdir():
                if hdir.is_dir() and re.match(rf"^{re.escape(prefix)}-h\d+$", hdir.name):
                    removed |= remove_host_files(lab_dir, hdir.name)
            with contextlib.suppress(OSError):
                hosts_dir.rmdir()
        for f in TOP_FILES + tuple(f + ".tmp" for f in TOP_FILES):
            if f == LOCK_FILE:
                continue
            with contextlib.suppress(FileNotFoundError):
                (lab_dir / f).unlink()
                removed = True
        if removed:
            actions.append(f"removed lab files in {lab_dir}")
    return {"actions": actions, "survivors": survivors}


def cmd_down(lab_dir: Path, prefix: str, control_dirs: list[str], check: bool) -> dict:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, mounts)")
    t0 = time.monotonic()
    if not lab_dir.exists():
        state: dict = {}
        res = teardown(lab_dir, prefix, state, control_dirs=control_dirs, keep_files=True, check=check)
    else:
        with lab_lock(lab_dir):
            state = load_state(lab_dir)
            prefix = state.get("config", {}).get("prefix", prefix)
            res = teardown(lab_dir, prefix, state, control_dirs=control_dirs, check=check)
            if not check:
                with contextlib.suppress(FileNotFoundError):
                    (lab_dir / LOCK_FILE).unlink()
        if not check:
            with contextlib.suppress(OSError):
                lab_dir.rmdir()  # only if we emptied it
    result = {"changed": bool(res["actions"]), "actions": res["actions"], "lab_dir": str(lab_dir),
              "prefix": prefix, "seconds": round(time.monotonic() - t0, 3), "check": check}
    if res["survivors"]:
        result.update(failed=True, msg=f"processes survived SIGKILL: {res['survivors']}")
    return result
