# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: the ``--diff`` of a bpf_map run, made for reading.

Ansible renders ``diff.before`` and ``diff.after`` as sorted JSON and diffs the two texts, so each
side is an object keyed by the map key: a changed entry is one ``-`` line and one ``+`` line under
its key. A value is shown as a person reads it: a per-CPU value as its sum over the CPUs (the
per-CPU list only when the value type has no sum), a PROG_ARRAY slot as the program's name and id.
A side with more than ``DIFF_LIMIT`` entries (a purge of a big map) shows the first ones and says
how many more there are, so the output stays a screenful; the module's ``added``, ``changed_keys``
and ``removed`` return values still list every key.

Pure: it takes the entries as ``_map._Decoder.entry`` decodes them. No Ansible here.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Sequence, Tuple

DIFF_LIMIT = 20   # entries shown per side; the rest is counted


def key_label(key: Any) -> str:
    """A decoded map key as the diff's object key: scalars as text, structs and arrays as compact JSON."""
    if isinstance(key, (dict, list)):
        return json.dumps(key, sort_keys=True, separators=(",", ":"))
    return str(key)


def shown_value(entry: dict) -> Any:
    """What the diff shows of one decoded entry."""
    if "program" in entry:   # PROG_ARRAY: the kernel holds a program id
        return f"{entry['program'] or 'unknown program'} (id {entry['value']})"
    if "per_cpu" in entry:   # per-CPU
        return entry["sum"] if entry["sum"] is not None else entry["per_cpu"]
    return entry["value"]


def _side(entries: Sequence[dict], limit: int) -> dict:
    side: Dict[str, Any] = {"entries": {key_label(e["key"]): shown_value(e) for e in entries[:limit]}}
    if len(entries) > limit:
        side["more"] = f"{len(entries) - limit} more"
    return side


def entries_diff(*, removed: Sequence[dict], changed: Sequence[Tuple[dict, dict]], added: Sequence[dict],
                 limit: int = DIFF_LIMIT) -> dict:
    """``{"before": ..., "after": ...}`` of a map's entries; ``changed`` holds (old, new) pairs.

    Changed entries come first on both sides, so the cut never hides one half of a change."""
    before: List[dict] = [old for old, _new in changed] + list(removed)
    after: List[dict] = [new for _old, new in changed] + list(added)
    return {"before": _side(before, limit), "after": _side(after, limit)}
