"""The command line of ebpfd_lab.py: one JSON object on stdout per subcommand.

Part of the lab tool (package docstring: the whole picture). Standard library only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import labtool
from labtool.cleanup import cmd_down
from labtool.errors import LabError
from labtool.naming import LabConfig
from labtool.status import cmd_status
from labtool.traffic import cmd_traffic
from labtool.up import cmd_up
from labtool.vm_images import build_images


def cmd_images(image_dir: Path, images: list[str]) -> int:
    """Build (or find cached) each VM image; one JSON line per run, like the other commands."""
    built = build_images(image_dir, sorted(set(images)))
    result = {"changed": any(b.get("build_seconds") is not None for b in built.values()),
              "failed": any("error" in b for b in built.values()),
              "images": {image: {k: str(v) if k == "path" else v for k, v in b.items()} for image, b in built.items()}}
    print(json.dumps(result, sort_keys=True))
    return 1 if result["failed"] else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ebpfd_lab.py", description=labtool.__doc__.split("\n\n", maxsplit=1)[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="create or repair the lab (idempotent)")
    down = sub.add_parser("down", help="remove the lab and everything it made")
    status = sub.add_parser("status", help="report health, change nothing")
    traffic = sub.add_parser("traffic", help="send UDP datagrams from a host's peer to the host")
    images = sub.add_parser("images", help="build the VM images into the cache ahead of `up` (no lab)")
    for p in (up, down, status, traffic):
        p.add_argument("--lab-dir", required=True, type=Path)
    up.add_argument("--count", type=int, default=3)
    up.add_argument("--prefix", default="ebpfd")
    up.add_argument("--mgmt-network", default="10.250.0.0/16")
    up.add_argument("--data-network", default="10.251.0.0/16")
    up.add_argument("--no-bridge", action="store_true", help="point-to-point /30 management links")
    up.add_argument("--python", default=sys.executable, help="ansible_python_interpreter for the hosts")
    up.add_argument("--sshd", default="/usr/sbin/sshd")
    up.add_argument("--ssh-port", type=int, default=22)
    up.add_argument("--jobs", type=int, default=8)
    up.add_argument("--vms", type=int, default=0, help="VM hosts <prefix>-v1..N (qemu)")
    for p in (up, images):
        p.add_argument("--vm-image", action="append", default=None,
                       help="image of VM N is the ((N-1) mod k)-th --vm-image (repeatable; default debian12)")
    up.add_argument("--vm-memory", default="512M")
    up.add_argument("--vm-cpus", type=int, default=1)
    up.add_argument("--vm-accel", choices=["auto", "kvm", "tcg"], default="auto",
                    help="auto: KVM if a probe guest boots under it, else TCG")
    for p in (up, images):
        p.add_argument("--image-dir", type=Path,
                       default=Path(os.environ.get("EBPF_DEPLOY_LAB_IMAGES") or "/var/tmp/ebpfd-images"),
                       help="VM image cache ($EBPF_DEPLOY_LAB_IMAGES or /var/tmp/ebpfd-images)")
    down.add_argument("--prefix", default="ebpfd", help="used when the lab dir holds no state")
    for p in (up, down):
        p.add_argument("--control-path-dir", action="append", default=None,
                       help="Ansible ssh control_path_dir, to close master connections (repeatable; "
                            "default ~/.ansible/cp)")
    for p in (up, down):
        p.add_argument("--check", action="store_true", help="report what would change, change nothing")
    traffic.add_argument("--host", required=True, help="host name (ebpfd-h1) or index (1)")
    traffic.add_argument("--count", type=int, required=True)
    traffic.add_argument("--rate", type=float, default=None, help="packets per second (default: as fast as possible)")
    traffic.add_argument("--size", type=int, default=22, help="UDP payload bytes (22 gives 64-byte frames)")
    traffic.add_argument("--port", type=int, default=9)
    args = ap.parse_args(argv)
    if args.cmd == "images":
        return cmd_images(args.image_dir.expanduser().absolute(), args.vm_image or ["debian12"])
    lab_dir = args.lab_dir.expanduser().absolute()
    try:
        if args.cmd == "up":
            cfg = LabConfig(lab_dir=lab_dir, count=args.count, prefix=args.prefix, mgmt_network=args.mgmt_network,
                            data_network=args.data_network, bridge=not args.no_bridge,
                            python=os.path.abspath(args.python) if os.sep in args.python else args.python,
                            sshd=args.sshd, ssh_port=args.ssh_port, jobs=args.jobs,
                            control_dirs=args.control_path_dir or ["~/.ansible/cp"],
                            vm_count=args.vms, vm_images=args.vm_image or ["debian12"],
                            vm_memory=args.vm_memory, vm_cpus=args.vm_cpus, vm_accel=args.vm_accel,
                            image_dir=args.image_dir.expanduser().absolute())
            result = cmd_up(cfg, args.check)
        elif args.cmd == "down":
            result = cmd_down(lab_dir, args.prefix, args.control_path_dir or ["~/.ansible/cp"], args.check)
        elif args.cmd == "status":
            result = cmd_status(lab_dir)
        else:
            result = cmd_traffic(lab_dir, args.host, args.count, args.rate, args.size, args.port)
    except LabError as exc:
        result = {"failed": True, "changed": False, "msg": exc.msg, **exc.details}
    print(json.dumps(result, indent=None, sort_keys=True))
    return 1 if result.get("failed") else 0
