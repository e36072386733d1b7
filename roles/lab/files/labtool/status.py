"""``status``: every host's health, changing nothing.

Part of the lab tool (package docstring: the whole picture). Standard library only.
"""
from __future__ import annotations

from pathlib import Path

from labtool.commands import ip_json
from labtool.namespaces import _ns_view, netns_names
from labtool.naming import config_from_state, INVENTORY_FILE, load_state
from labtool.netns_hosts import host_facts, network_problems
from labtool.sshd import sshd_problems
from labtool.vm_images import image_path
from labtool.vm_lab import vm_facts
from labtool.vm_machine import vm_problems


def cmd_status(lab_dir: Path) -> dict:
    state = load_state(lab_dir)
    if not state:
        return {"changed": False, "up": False, "hosts": [], "lab_dir": str(lab_dir)}
    c = state["config"]
    cfg = config_from_state(lab_dir, c)
    root_links = {d["ifname"]: d for d in ip_json(["-d", "addr", "show"])}
    namespaces = netns_names()
    hosts = []
    for h in cfg.hosts:
        sh = state.get("hosts", {}).get(h.name, {})
        net = network_problems(cfg, h, root_links, namespaces)
        problems = net + ([] if net else sshd_problems(cfg, h, sh.get("sshd_pid"), sh.get("sshd_config_sha")))
        hosts.append({**host_facts(cfg, h, sh), "healthy": not problems, "problems": problems})
    opts, vms = cfg.vm_options(), []
    for v in cfg.vms:
        sv = state.get("vms", {}).get(v.name, {})
        image = image_path(cfg.image_dir, v.image)
        problems = vm_problems(opts, v, sv, image, namespaces, _ns_view)
        vms.append({**vm_facts(v, sv), "healthy": not problems, "problems": problems})
    return {"changed": False, "up": all(h["healthy"] for h in hosts + vms), "hosts": hosts, "vms": vms,
            "lab_dir": str(lab_dir), "inventory": str(lab_dir / INVENTORY_FILE), "config": c}
