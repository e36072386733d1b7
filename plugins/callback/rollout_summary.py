# Copyright: ebpf.deploy maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
name: rollout_summary
type: aggregate
short_description: Progress and summary of an ebpf.deploy rollout
version_added: 0.1.0
description:
  - Prints one line per host as the P(ebpf.deploy.rollout#role) role finishes it (committed, unchanged,
    would switch (check mode), rolled back, self-reverted, halted, refused, failed or unreachable), and at the end of the playbook a
    table per stage and host with the version before and after, what the host's record holds (C(committed),
    C(pending) with the confirm deadline at which the host reverts by itself, or C(self-reverted)), the health
    checks passed and failed, and the time taken.
  - Writes the same summary as JSON when O(report_path) is set.
  - Enable it with C(callbacks_enabled = ebpf.deploy.rollout_summary) in C(ansible.cfg).
options:
  report_path:
    description: File to write the rollout summary to, as JSON.
    type: path
    env:
      - name: EBPF_DEPLOY_ROLLOUT_REPORT
    ini:
      - section: ebpf_deploy
        key: rollout_report
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase

# what the host's record holds after the role settled the host, by the role's status; a switch that
# was neither committed nor rolled back (halted, or the host stopped answering) is pending there
RECORD_BY_STATUS = {"committed": "committed", "unchanged": "committed", "rolled_back": "committed",
                    "refused": "committed", "self_reverted": "self-reverted", "would_switch": "committed"}


def record_state(entry: dict) -> str:
    """The host's record as the summary shows it: committed, self-reverted, or pending until its
    confirm deadline (when the host's watcher returns it to the committed version); '-' when unknown."""
    status = entry.get("status")
    pending = [v for v in entry.get("versions") or [] if v.get("pending")]
    if status in RECORD_BY_STATUS:
        return RECORD_BY_STATUS[status]
    if not pending:
        return "-"
    deadlines = [v["deadline"] for v in pending if v.get("deadline")]
    if not deadlines:
        return "pending (no watcher)"
    return "pending until " + time.strftime("%H:%M:%S UTC", time.gmtime(min(deadlines)))


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "ebpf.deploy.rollout_summary"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._hosts: dict[str, dict] = {}
        self._stages: list[tuple[str, ...]] = []
        self._started = time.monotonic()

    # --- progress ---------------------------------------------------------------------------
    def _stage_of(self, batch: list[str]) -> int:
        """The stage number of a batch; 0 for hosts left out of the stages (already converged)."""
        if not batch:
            return 0
        key = tuple(batch)
        if key not in self._stages:
            self._stages.append(key)
        return self._stages.index(key) + 1

    def v2_runner_on_ok(self, result) -> None:
        self._record(result._result, result._host.get_name())

    def v2_runner_item_on_ok(self, result) -> None:
        self._record(result._result, result._host.get_name())

    def _record(self, data: dict, host: str) -> None:
        rollout = (data.get("ansible_facts") or {}).get("rollout_result")
        if not isinstance(rollout, dict):
            return
        # the role names the host: facts set for an earlier stage's host (delegate_facts) are its own
        host = rollout.get("host") or host
        entry = dict(rollout, stage=self._stage_of(rollout.get("batch", [])))
        entry["record"] = record_state(entry)
        self._hosts[host] = entry
        where = f"stage {entry['stage']}" if entry["stage"] else "converged"
        self._display.display(f"[rollout] {where} {host}: {self._describe(entry)}")

    @staticmethod
    def _in_rollout(result) -> bool:
        """Only the rollout role's tasks count: other plays and ad hoc runs print no summary."""
        role = getattr(result._task, "_role", None)
        return role is not None and role.get_name().endswith("rollout")

    def v2_runner_on_unreachable(self, result) -> None:
        if not self._in_rollout(result):
            return
        host = result._host.get_name()
        entry = self._hosts.setdefault(host, {"host": host, "versions": [], "checks": []})
        entry.update(status="unreachable", reasons=[result._result.get("msg", "unreachable")])
        entry["record"] = record_state(entry)
        self._display.display(f"[rollout] {host}: unreachable")

    def v2_runner_on_failed(self, result, ignore_errors=False) -> None:
        if ignore_errors or not self._in_rollout(result):
            return
        host = result._host.get_name()
        entry = self._hosts.get(host)
        if entry is None:
            # failed before the role recorded anything (validate or a refused preflight)
            self._hosts[host] = {"host": host, "status": "failed", "versions": [], "checks": [],
                                 "reasons": [f"{result._task.get_name()}: {result._result.get('msg', 'failed')}"]}

    # --- summary ----------------------------------------------------------------------------
    @staticmethod
    def _versions(entry: dict) -> str:
        parts = [f"{v.get('name')} {v.get('before') or '-'}→{v.get('after') or '-'}" for v in entry.get("versions", [])]
        return ", ".join(parts) or "-"

    def _describe(self, entry: dict) -> str:
        checks = entry.get("checks") or []
        passed = sum(1 for c in checks if c.get("passed"))
        text = f"{entry.get('status')} ({self._versions(entry)}; record {entry.get('record', '-')}; " \
               f"checks {passed}/{len(checks)}"
        if entry.get("seconds") is not None:
            text += f"; {float(entry['seconds']):.1f} s"
        text += ")"
        if entry.get("reasons"):
            text += " - " + "; ".join(entry["reasons"])
        return text

    def v2_playbook_on_stats(self, stats) -> None:
        if not self._hosts:
            return
        rows = sorted(self._hosts.values(), key=lambda e: (e.get("stage", 0) or 999, e.get("host", "")))
        self._display.banner("ROLLOUT SUMMARY")
        header = (f"{'stage':<6} {'host':<22} {'status':<13} {'versions (before→after)':<40} {'record':<27} "
                  f"{'checks':<8} {'time':>7}")
        self._display.display(header)
        for entry in rows:
            checks = entry.get("checks") or []
            failed = [c for c in checks if not c.get("passed")]
            seconds = entry.get("seconds")
            self._display.display(
                f"{entry.get('stage') or '-'!s:<6} {entry.get('host', ''):<22} {entry.get('status', ''):<13} "
                f"{self._versions(entry):<40} {entry.get('record', '-'):<27} {len(checks) - len(failed)}/{len(checks):<6} "
                f"{(f'{float(seconds):.1f} s' if seconds is not None else '-'):>7}")
            for check in failed:
                self._display.display(f"{'':<6} {'':<22} failed check {check.get('name')}: {check.get('detail')}")
            for reason in entry.get("reasons") or []:
                self._display.display(f"{'':<6} {'':<22} {reason}")
        counts: dict[str, int] = {}
        for entry in rows:
            counts[entry.get("status", "?")] = counts.get(entry.get("status", "?"), 0) + 1
        self._display.display("totals: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                              + f"; {len(self._stages)} stage(s) in {time.monotonic() - self._started:.1f} s")
        path = self.get_option("report_path")
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w", encoding="utf-8") as report:
                json.dump({"stages": len(self._stages), "hosts": rows, "totals": counts}, report, indent=2, default=str)
