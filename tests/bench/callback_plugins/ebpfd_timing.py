# Copyright: ebpf.deploy maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-task wall-clock timing for the benchmarks (tests/bench/bench_fleet.py).

Not part of the collection: enabled only by the benchmark with
    ANSIBLE_CALLBACK_PLUGINS=tests/bench/callback_plugins ANSIBLE_CALLBACKS_ENABLED=...,ebpfd_timing
and writes JSON to $EBPFD_TIMING_OUT: for every task start (in playbook order) its name, play,
action, the seconds from the playbook start to the task start and to its end (the next task start
or the play/playbook end), and the hosts it ran, skipped or failed on.
"""
from __future__ import annotations

DOCUMENTATION = r"""
name: ebpfd_timing
type: aggregate
short_description: per-task timing for ebpf.deploy benchmarks (tests only)
description: Writes the wall-clock span of every task to the file named by EBPFD_TIMING_OUT.
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "ebpfd_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._t0 = time.monotonic()
        self._tasks: list[dict] = []
        self._plays: list[dict] = []
        self._play = ""

    def _now(self) -> float:
        return round(time.monotonic() - self._t0, 4)

    def _close(self) -> None:
        if self._tasks and self._tasks[-1].get("end") is None:
            self._tasks[-1]["end"] = self._now()

    def v2_playbook_on_play_start(self, play) -> None:
        self._close()
        self._play = play.get_name()
        self._plays.append({"name": self._play, "start": self._now()})

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:
        self._close()
        self._tasks.append({"name": task.get_name(), "action": task.action, "play": self._play,
                            "play_index": len(self._plays) - 1, "start": self._now(), "end": None,
                            "ok": 0, "changed": 0, "skipped": 0, "failed": 0, "items": 0})

    v2_playbook_on_handler_task_start = v2_playbook_on_task_start

    def _count(self, key: str, result=None) -> None:
        if self._tasks:
            self._tasks[-1][key] += 1
            if key in ("ok", "failed") and result is not None and result._result.get("changed"):
                self._tasks[-1]["changed"] += 1

    def v2_runner_on_ok(self, result) -> None:
        self._count("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False) -> None:
        self._count("failed", result)

    def v2_runner_on_unreachable(self, result) -> None:
        self._count("failed")

    def v2_runner_on_skipped(self, result) -> None:
        self._count("skipped")

    def v2_runner_item_on_ok(self, result) -> None:
        self._count("items")

    def v2_playbook_on_stats(self, stats) -> None:
        self._close()
        out = os.environ.get("EBPFD_TIMING_OUT")
        if out:
            with open(out, "w", encoding="utf-8") as handle:
                json.dump({"seconds": self._now(), "plays": self._plays, "tasks": self._tasks}, handle, indent=1)
