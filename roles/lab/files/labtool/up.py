"""``up``: create, repair or resize the lab; idempotent, with ``--check``.

Part of the lab tool (package docstring: the whole picture). Standard library only.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from labtool.cleanup import remove_host_files, teardown
from labtool.commands import ip_json, run, write_if_changed
from labtool.errors import LabError
from labtool.inventory import render_inventory
from labtool.namespaces import netns_names
from labtool.naming import (
    AUTHORIZED_KEYS, CLIENT_KEY, HOSTS_DIR, INVENTORY_FILE, KNOWN_HOSTS_FILE, STATE_FILE, LabConfig, lab_lock,
    load_state, stale_indices,
)
from labtool.netns_hosts import converge_host, ensure_bridge, host_facts, remove_hosts
from labtool.sshd import close_ssh_masters, ensure_key
from labtool.vm_hooks import lab_hooks
from labtool.vm_lab import converge_vms, known_hosts_lines, vm_facts


def cmd_up(cfg: LabConfig, check: bool) -> dict:
    """Plan the lab (refused before anything changes), then apply the plan."""
    plan_up(cfg)
    return apply_up(cfg, check)


def plan_up(cfg: LabConfig) -> None:
    """What the lab must be (``cfg.hosts``, ``cfg.vms``), or why this machine cannot hold it."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, mounts)")
    for bad in ("/run", "/sys", "/proc", "/dev"):
        if cfg.lab_dir == Path(bad) or Path(bad) in cfg.lab_dir.parents:
            raise LabError(f"lab_dir {cfg.lab_dir} must not be under {bad}: lab hosts mount their own there")
    for tool in ("ip", "unshare", "ssh-keygen"):
        if shutil.which(tool) is None:
            raise LabError(f"{tool} not found on PATH")
    if not os.access(cfg.sshd, os.X_OK):
        raise LabError(f"sshd not found at {cfg.sshd}")
    cfg.plan()


def apply_up(cfg: LabConfig, check: bool) -> dict:
    """Bring this machine to the planned lab (with ``check``, only say what would change)."""
    t0 = time.monotonic()
    actions: list[str] = []
    if check and not cfg.lab_dir.exists():
        return {"changed": True, "actions": ["would create the lab"], "hosts": [], "check": True}
    with lab_lock(cfg.lab_dir):
        state = load_state(cfg.lab_dir)
        old = state.get("config", {})
        if old.get("prefix") and old["prefix"] != cfg.prefix:
            if check:
                actions.append(f"would remove the old lab with prefix {old['prefix']}")
            else:
                down = teardown(cfg.lab_dir, old["prefix"], state, control_dirs=[], keep_files=True)
                actions += down["actions"]
            state = {}
        if not check:
            os.chmod(cfg.lab_dir, 0o755)
            (cfg.lab_dir / HOSTS_DIR).mkdir(exist_ok=True, mode=0o700)
            if ensure_key(cfg.lab_dir / CLIENT_KEY, "ebpfd-lab"):
                actions.append("generated the client key pair")
            pub = (cfg.lab_dir / (CLIENT_KEY + ".pub")).read_text()
            if write_if_changed(cfg.lab_dir / AUTHORIZED_KEYS, pub, mode=0o600):
                actions.append("wrote authorized_keys")
        root_links = {d["ifname"]: d for d in ip_json(["-d", "addr", "show"])}
        if cfg.bridge and cfg.count:
            if check:
                if cfg.bridge_name not in root_links:
                    actions.append(f"would create bridge {cfg.bridge_name}")
            else:
                actions += ensure_bridge(cfg, root_links)
        elif cfg.bridge_name in root_links:
            actions.append(f"{'would delete' if check else 'deleted'} bridge {cfg.bridge_name}")
            if not check:
                run(["ip", "link", "del", cfg.bridge_name], check=False)
        stale = stale_indices(cfg.prefix, cfg.count, root_links)
        if stale:
            actions.append(f"{'would remove' if check else 'removed'} hosts beyond {cfg.count}: {stale}")
            if not check:
                stale_cfg = LabConfig(lab_dir=cfg.lab_dir, count=max(stale), prefix=cfg.prefix,
                                      mgmt_network=cfg.mgmt_network, data_network=cfg.data_network,
                                      bridge=cfg.bridge)
                stale_cfg.plan()
                gone = [h for h in stale_cfg.hosts if h.index in stale]
                close_ssh_masters([h.mgmt_address for h in gone], cfg.ssh_port, cfg.control_dirs)
                remove_hosts(gone)
                for h in gone:
                    remove_host_files(cfg.lab_dir, h.name)
        namespaces = netns_names()
        shosts = state.get("hosts", {})
        with ThreadPoolExecutor(max_workers=max(1, cfg.jobs)) as pool:
            results = list(pool.map(
                lambda h: converge_host(cfg, h, shosts.get(h.name, {}), root_links, namespaces, check),
                cfg.hosts))
        errors = {r.name: {"error": r.error, **r.details} for r in results if r.error}
        for r in results:
            actions += [f"{r.name}: {a}" for a in r.actions]
        new_hosts = {r.name: {"sshd_pid": r.sshd_pid, "sshd_config_sha": r.config_sha} for r in results}
        vms = converge_vms(
            cfg.vm_options(), cfg.prefix, cfg.data_network, cfg.vms, state.get("vms", {}),
            authorized_keys="" if check else (cfg.lab_dir / AUTHORIZED_KEYS).read_text(),
            control_dirs=cfg.control_dirs, hooks=lab_hooks(), check=check)
        actions += vms["actions"]
        errors.update(vms["errors"])
        for notice in vms["notices"]:
            print(f"ebpfd_lab: {notice}", file=sys.stderr)
        if not check:
            known = "".join(
                f"{h.mgmt_address} {' '.join((cfg.host_dir(h) / 'ssh_host_ed25519_key.pub').read_text().split()[:2])}\n"
                for h in cfg.hosts if (cfg.host_dir(h) / "ssh_host_ed25519_key.pub").exists())
            known += known_hosts_lines(cfg.vm_options(), cfg.vms, vms["state"])
            if write_if_changed(cfg.lab_dir / KNOWN_HOSTS_FILE, known):
                actions.append("wrote known_hosts")
            if write_if_changed(cfg.lab_dir / INVENTORY_FILE, render_inventory(cfg, vms["state"])):
                actions.append("wrote inventory.yml")
            new_state = {"config": cfg.as_json(), "hosts": new_hosts, "vms": vms["state"]}
            write_if_changed(cfg.lab_dir / STATE_FILE, json.dumps(new_state, indent=2, sort_keys=True) + "\n")
    result = {
        "changed": bool(actions),
        "actions": actions,
        "lab_dir": str(cfg.lab_dir),
        "inventory": str(cfg.lab_dir / INVENTORY_FILE),
        "private_key": str(cfg.lab_dir / CLIENT_KEY),
        "hosts": [host_facts(cfg, h, new_hosts.get(h.name, {})) for h in cfg.hosts],
        "vms": [vm_facts(v, vms["state"].get(v.name, {})) for v in cfg.vms],
        "images": vms["images"],
        "boot_seconds": vms["boot_seconds"],
        "notices": vms["notices"],
        "seconds": round(time.monotonic() - t0, 3),
        "check": check,
    }
    if errors:
        result.update(failed=True, msg=f"{len(errors)} lab host(s) failed: {sorted(errors)}", errors=errors)
    return result
