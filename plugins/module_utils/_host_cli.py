# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: what the host runs by itself, with no Ansible and no controller.

``ebpf-deploy-host watch ...``   the confirm watcher of one pending switch (see _watcher): sleeps
                                 until the deadline, then rolls the deployment back to its
                                 committed record unless the switch was settled meanwhile.
``ebpf-deploy-host restore``     at boot (ebpf-deploy-restore.service): every committed
                                 deployment of the record loaded from its stored object, pinned,
                                 attached and given its declared map entries again; a switch
                                 that was pending is not restored (its committed version is).
                                 One line per deployment; exit status 1 when one failed; the
                                 results also go to <state_dir>/restore.json for bpf_facts.

Both use the modules' own managers (the same code a playbook runs). No Ansible here.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import List, Optional

from ansible_collections.ebpf.deploy.plugins.module_utils import _deployment as deployment
from ansible_collections.ebpf.deploy.plugins.module_utils import _record as record
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import EbpfDeployError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ebpf-deploy-host")
    sub = parser.add_subparsers(dest="command", required=True)
    watch = sub.add_parser("watch", help="roll a pending switch back at its deadline unless it was settled")
    watch.add_argument("--state-dir", required=True)
    watch.add_argument("--bpffs-root", required=True)
    watch.add_argument("--deployment", required=True)
    watch.add_argument("--token", required=True)
    watch.add_argument("--deadline", type=float, required=True)
    restore = sub.add_parser("restore", help="restore every committed deployment (at boot)")
    restore.add_argument("--state-dir", default=record.DEFAULT_STATE_DIR)
    return parser


def _say(line: str) -> None:
    """One line to stdout: the journal under systemd, watcher.log for a detached watcher."""
    sys.stdout.write(f"ebpf-deploy: {line}\n")
    sys.stdout.flush()


def _cancelled(_signum, _frame) -> None:
    raise SystemExit(0)


def watch(args) -> int:
    signal.signal(signal.SIGTERM, _cancelled)   # cancelled by a commit
    delay = args.deadline - time.time()
    if delay > 0:
        time.sleep(delay)
    params = {"name": args.deployment, "bpffs_root": args.bpffs_root, "state_dir": args.state_dir,
              "state": "rolled_back", "lock_timeout": 300}
    try:
        result = deployment.DeploymentManager(deployment.Request.from_params(params), watcher_token=args.token).run()
    except EbpfDeployError as err:
        _say(f"{args.deployment}: the confirm deadline passed, rolling back failed: {err.msg}")
        return 1
    if result.get("changed"):
        _say(f"{args.deployment}: not confirmed by its deadline; rolled back to "
             f"{result.get('version') or 'nothing (it was new)'}")
    return 0


def restore(args) -> int:
    results = []
    failed = 0
    for rec in record.all_records(args.state_dir):
        entry = {"deployment": rec.name, "bpffs_root": rec.bpffs_root}
        try:
            result = deployment.restore(rec)
            entry.update(status="restored" if result.get("version") else "nothing committed",
                         version=result.get("version"), attach=len(result.get("attach") or []),
                         skipped_pending=result.get("skipped_pending"))
            _say(f"{rec.name}: {entry['status']} {entry['version'] or ''} under {rec.bpffs_root}"
                 + (f" (pending {entry['skipped_pending']} not restored)" if entry["skipped_pending"] else ""))
        except EbpfDeployError as err:
            failed += 1
            entry.update(status="failed", error=err.msg)
            _say(f"{rec.name}: restore failed: {err.msg}")
        results.append(entry)
    if Path(args.state_dir).is_dir():
        record.write_restore_report(args.state_dir, {"at": time.time(), "failed": failed, "deployments": results})
    if not results:
        _say("nothing recorded to restore")
    return 1 if failed else 0


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    return watch(args) if args.command == "watch" else restore(args)
