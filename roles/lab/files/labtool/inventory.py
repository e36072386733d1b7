"""The lab's Ansible inventory: groups ``netns`` and ``vm`` under ``lab``.

Part of the lab tool (package docstring: the whole picture). Standard library only.
"""
from __future__ import annotations

import json

from labtool.naming import CLIENT_KEY, KNOWN_HOSTS_FILE, LabConfig
from labtool.vm_lab import inventory_lines


def render_inventory(cfg: LabConfig, vm_state: dict | None = None) -> str:
    q = json.dumps  # a JSON string is a valid YAML double-quoted scalar
    lines = [f"# lab inventory written by ebpf.deploy.lab (ebpfd_lab.py up) for {cfg.lab_dir}", "---",
             "all:", "  children:", "    lab:", "      hosts:"]
    for h in cfg.hosts:
        lines += [
            f"        {h.name}:",
            f"          ansible_host: {q(h.mgmt_address)}",
            f"          ansible_port: {cfg.ssh_port}",
            "          ansible_user: root",
            f"          ansible_ssh_private_key_file: {q(str(cfg.lab_dir / CLIENT_KEY))}",
            "          ansible_ssh_common_args: "
            + q(f"-o UserKnownHostsFile={cfg.lab_dir / KNOWN_HOSTS_FILE} -o IdentitiesOnly=yes"),
            f"          ansible_python_interpreter: {q(cfg.python)}",
            f"          lab_netns: {q(h.name)}",
            f"          lab_peer_netns: {q(h.peer_ns)}",
            "          lab_data_interface: eth0",
            f"          lab_address: {q(h.data_address)}",
            f"          lab_peer_address: {q(h.peer_address)}",
            "          lab_mgmt_interface: mgmt0",
            f"          lab_mgmt_address: {q(h.mgmt_address)}",
            "          lab_kind: netns",
        ]
    lines += inventory_lines(cfg.vms, vm_state or {}, cfg.lab_dir, cfg.lab_dir / KNOWN_HOSTS_FILE,
                             cfg.lab_dir / CLIENT_KEY)
    if not cfg.hosts and not cfg.vms:
        lines[-1] += " {}"
    first = [h.name for h in cfg.hosts] + [v.name for v in cfg.vms]
    for group, members in (("netns", [h.name for h in cfg.hosts]), ("vm", [v.name for v in cfg.vms]),
                           ("canary", first[:1])):
        lines += [f"    {group}:"]
        lines += ["      hosts:"] + [f"        {m}: {{}}" for m in members] if members else ["      hosts: {}"]
    lines += ["  vars:", f"    lab_dir: {q(str(cfg.lab_dir))}", ""]
    return "\n".join(lines)
