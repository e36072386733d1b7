"""The VMs of a lab: converge, remove and tear them down; their inventory and known_hosts lines.

Part of the lab tool (package docstring: the whole picture). Standard library only.
"""
from __future__ import annotations

import contextlib
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from labtool.errors import VmError
from labtool.vm_accel import choose_accel
from labtool.vm_images import build_images, image_path, image_ready
from labtool.vm_machine import (
    close_ssh_masters, config_sha, destroy_vm, QemuEnded, start_vm, vm_dir, vm_problems, VmOptions, wait_booted,
)
from labtool.vm_plan import GUEST_MGMT_ADDRESS, plan_vms, VMS_DIR, VmSpec
from labtool.vm_processes import free_port, port_free


@dataclass
class LabHooks:
    """The lab script's helpers the VM code uses (kept there, shared with the netns hosts)."""
    in_netns: object
    write_sysctl: object
    kill_pids: object
    ensure_key: object
    ns_view: object
    netns_names: object


def _indices(prefix: str, lab_dir: Path, namespaces: set[str], state_vms: dict) -> set[int]:
    """Every VM index a lab of this prefix may have left: peer namespaces, VM dirs, recorded state."""
    pat = re.compile(rf"^{re.escape(prefix)}-p?v(\d+)$")
    names = list(namespaces) + list(state_vms)
    with contextlib.suppress(OSError):
        names += [p.name for p in (lab_dir / VMS_DIR).iterdir()]
    return {int(m[1]) for n in names if (m := pat.match(n))}


def remove_vms(opts: VmOptions, vms: list[VmSpec], state_vms: dict, control_dirs: list[str], hooks: LabHooks,
               *, keep_key: bool) -> tuple[list[str], list[int]]:
    actions: list[str] = []
    survivors: list[int] = []
    ports = [int(state_vms[v.name]["port"]) for v in vms if state_vms.get(v.name, {}).get("port")]
    actions += close_ssh_masters(ports, control_dirs, hooks.kill_pids)
    namespaces = hooks.netns_names()
    for vm in vms:
        left = destroy_vm(opts, vm, state_vms.get(vm.name, {}).get("pid"), kill_pids=hooks.kill_pids,
                          namespaces=namespaces, keep_key=keep_key)
        survivors += left
        actions.append(f"{vm.name}: stopped and removed")
    if not keep_key:
        with contextlib.suppress(OSError):
            (opts.lab_dir / VMS_DIR).rmdir()
    return actions, survivors


def converge_vms(opts: VmOptions, prefix: str, data_network: str, vms: list[VmSpec], state_vms: dict, *,
                 authorized_keys: str, control_dirs: list[str], hooks: LabHooks, check: bool) -> dict:
    """Bring the VMs to the plan: keep a healthy one, (re)start the rest from a fresh overlay, remove
    VMs beyond the plan. Returns actions, the new state per VM, errors, notices and timings."""
    out: dict = {"actions": [], "state": {}, "errors": {}, "notices": [], "images": {}, "boot_seconds": {}}
    namespaces = hooks.netns_names()
    wanted = {v.index for v in vms}
    stale = sorted(_indices(prefix, opts.lab_dir, namespaces, state_vms) - wanted)
    if stale:
        gone = plan_vms(prefix, data_network, max(stale), [vms[0].image if vms else "debian12"])
        gone = [v for v in gone if v.index in stale]
        if check:
            out["actions"] += [f"would remove {v.name}" for v in gone]
        else:
            acts, _left = remove_vms(opts, gone, state_vms, control_dirs, hooks, keep_key=False)
            out["actions"] += acts
    if not vms:
        return out
    wanted_images = sorted({v.image for v in vms})
    if check:
        images = {image: image_path(opts.image_dir, image) for image in wanted_images}
        out["actions"] += [f"would build VM image {path.name}" for path in images.values() if not image_ready(path)]
    else:
        built = build_images(opts.image_dir, wanted_images)
        images = {image: b["path"] for image, b in built.items() if "path" in b}
        out["errors"].update({image: b["error"] for image, b in built.items() if "error" in b})
        for image, path in images.items():
            seconds = built[image]["build_seconds"]
            out["images"][image] = {"path": str(path), "build_seconds": seconds}
            if seconds is not None:
                out["actions"].append(f"built VM image {path.name} in {seconds} s")
    todo = []
    for vm in vms:
        sv = state_vms.get(vm.name, {})
        if vm.image not in images:
            out["errors"][vm.name] = {"error": f"image {vm.image} unavailable"}
            continue
        if check and not image_ready(images[vm.image]):
            problems = ["image not built"]
        else:
            problems = vm_problems(opts, vm, sv, images[vm.image], namespaces, hooks.ns_view)
        if not problems:
            out["state"][vm.name] = sv
            continue
        if check:
            out["actions"].append(f"{vm.name}: would (re)start ({'; '.join(problems)})")
            out["state"][vm.name] = sv
            continue
        todo.append((vm, sv, problems))
    if not todo:
        return out
    stop, _left = remove_vms(opts, [vm for vm, _sv, _p in todo], state_vms, control_dirs, hooks, keep_key=True)
    out["actions"] += [a for a in stop if not a.endswith("stopped and removed")]
    first = images[todo[0][0].image]
    accel, notice = choose_accel(opts.accel, first / "vmlinuz", opts.lab_dir)
    if notice:
        out["notices"].append(notice)

    def start(vm: VmSpec, port: int) -> int:
        return start_vm(opts, vm, images[vm.image], accel, port, authorized_keys=authorized_keys,
                        in_netns=hooks.in_netns, write_sysctl=hooks.write_sysctl)

    started = []
    for vm, sv, problems in todo:
        d = vm_dir(opts, vm)
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        hooks.ensure_key(d / "ssh_host_ed25519_key", vm.name)
        old = sv.get("port")
        port = int(old) if old and port_free(int(old)) else free_port()
        try:
            pid = start(vm, port)
        except (VmError, OSError) as exc:
            out["errors"][vm.name] = {"error": getattr(exc, "msg", str(exc))}
            continue
        started.append((vm, pid, port, problems))

    def wait(item):
        vm, pid, port, _problems = item
        try:
            return vm, pid, wait_booted(opts, vm, pid, port), None
        except QemuEnded as exc:
            # once, with a fresh overlay and peer: a qemu has ended early under load with an empty
            # log (twice in many runs, cause unknown); a second end is the error
            out["notices"].append(f"{vm.name}: {exc.msg}; started once more")
        except VmError as exc:
            return vm, pid, None, exc
        destroy_vm(opts, vm, pid, kill_pids=hooks.kill_pids, namespaces=hooks.netns_names())
        try:
            pid = start(vm, port)
            return vm, pid, wait_booted(opts, vm, pid, port), None
        except (VmError, OSError) as exc:
            return vm, pid, None, exc if isinstance(exc, VmError) else VmError(str(exc))

    with ThreadPoolExecutor(max_workers=max(1, len(started))) as pool:
        waited = list(pool.map(wait, started))
    for (vm, _pid, port, problems), (_vm, pid, seconds, exc) in zip(started, waited):
        out["state"][vm.name] = {"pid": pid, "port": port, "accel": accel, "image": images[vm.image].name,
                                 "config_sha": config_sha(opts, vm, images[vm.image])}
        if exc is not None:
            out["errors"][vm.name] = {"error": exc.msg, **exc.details}
            continue
        out["boot_seconds"][vm.name] = seconds
        why = "started" if problems == ["qemu not running"] else f"restarted ({'; '.join(problems)})"
        out["actions"].append(f"{vm.name}: {why} {vm.image} with {accel}, SSH on 127.0.0.1:{port} in {seconds} s")
    return out


def teardown_vms(opts: VmOptions, prefix: str, data_network: str, state_vms: dict, control_dirs: list[str],
                 hooks: LabHooks, *, check: bool) -> tuple[list[str], list[int]]:
    indices = _indices(prefix, opts.lab_dir, hooks.netns_names(), state_vms)
    if not indices:
        return [], []
    vms = [v for v in plan_vms(prefix, data_network, max(indices), ["debian12"]) if v.index in indices]
    if check:
        return [f"would remove {v.name}" for v in vms], []
    return remove_vms(opts, vms, state_vms, control_dirs, hooks, keep_key=False)


def inventory_lines(vms: list[VmSpec], state_vms: dict, lab_dir: Path, known_hosts: Path, client_key: Path) -> list[str]:
    q = json.dumps
    lines = []
    for vm in vms:
        sv = state_vms.get(vm.name, {})
        lines += [
            f"        {vm.name}:",
            '          ansible_host: "127.0.0.1"',
            f"          ansible_port: {int(sv.get('port') or 0)}",
            "          ansible_user: root",
            f"          ansible_ssh_private_key_file: {q(str(client_key))}",
            "          ansible_ssh_common_args: " + q(f"-o UserKnownHostsFile={known_hosts} -o IdentitiesOnly=yes"),
            '          ansible_python_interpreter: "/usr/bin/python3"',
            "          lab_kind: vm",
            f"          lab_vm_image: {q(vm.image)}",
            f"          lab_peer_netns: {q(vm.peer_ns)}",
            "          lab_data_interface: eth0",
            f"          lab_address: {q(vm.data_address)}",
            f"          lab_peer_address: {q(vm.peer_address)}",
            "          lab_mgmt_interface: mgmt0",
            f"          lab_mgmt_address: {q(GUEST_MGMT_ADDRESS.split('/', maxsplit=1)[0])}",
        ]
    return lines


def known_hosts_lines(opts: VmOptions, vms: list[VmSpec], state_vms: dict) -> str:
    out = ""
    for vm in vms:
        pub = vm_dir(opts, vm) / "ssh_host_ed25519_key.pub"
        port = state_vms.get(vm.name, {}).get("port")
        if port and pub.exists():
            out += f"[127.0.0.1]:{port} {' '.join(pub.read_text().split()[:2])}\n"
    return out


def vm_facts(vm: VmSpec, state_vm: dict) -> dict:
    return {"name": vm.name, "kind": "vm", "image": vm.image, "peer_netns": vm.peer_ns, "address": vm.data_address,
            "peer_address": vm.peer_address, "ssh_port": state_vm.get("port"), "pid": state_vm.get("pid"),
            "accel": state_vm.get("accel")}
