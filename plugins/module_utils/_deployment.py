# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: the manager behind ``ebpf.deploy.bpf_deployment``.

A whole deployment in one run: the object's programs pinned as a version (the bpf_program
manager), each attachment on its interface (the xdp_attach manager) and each map's entries (the
bpf_map manager), in that order, in one process, so that converging a host, or asking in check mode
whether it has converged, costs one module run instead of one per part.

Production-safe order:

1. everything that can be checked without changing the host is checked first: the request, each
   attachment's network namespace and interface (a typo refuses before anything is loaded);
2. the program manager loads the object beside the running version and makes it current;
3. each attachment is switched atomically (bpf_link update / XDP_FLAGS_REPLACE), then the maps
   are written (the map manager undoes its own partial writes);
4. if step 3 fails, what this run did is undone: the attachments already switched and the
   ``current`` version go back to what they were (a deployment new to the host is detached and
   removed), and the error says so.

In check mode a version that is not pinned yet cannot be attached, so its attachments are
predicted from what the interface holds now (``predicted: true``).

No Ansible here: the module passes its params in and gets a result dict back.
"""
from __future__ import annotations

from typing import Callable, List, Optional

from ansible_collections.ebpf.deploy.plugins.module_utils import _netlink as netlink
from ansible_collections.ebpf.deploy.plugins.module_utils import _program as program
from ansible_collections.ebpf.deploy.plugins.module_utils import _xdp as xdp
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import EbpfDeployError, InvalidInput
from ansible_collections.ebpf.deploy.plugins.module_utils._lock import deployment_lock
from ansible_collections.ebpf.deploy.plugins.module_utils._pins import Deployment

# what bpf_deployment passes on to each manager
PROGRAM_KEYS = ("name", "state", "src", "content", "programs", "bpffs_root", "checksum", "program_type",
                "keep_versions", "map_conflict", "verifier_log_level", "version", "lock_timeout", "preflight_fail_on")
ATTACH_KEYS = ("interface", "netns", "program", "mode", "method", "force")
MAP_KEYS = ("map", "key_type", "value_type", "entries", "purge", "overwrite", "value_deployment")


def _attach_label(spec: dict) -> str:
    return f"{spec['netns']}@{spec['interface']}" if spec.get("netns") else spec["interface"]


class DeploymentManager:
    """One bpf_deployment task: ``DeploymentManager(params, check_mode=..., diff_mode=...).run()``."""

    def __init__(self, params: dict, *, check_mode: bool = False, diff_mode: bool = False) -> None:
        self.p = params
        self.check_mode = check_mode
        self.diff_mode = diff_mode
        self.name = params["name"]
        self.root = params.get("bpffs_root") or program.DEFAULT_BPFFS_ROOT
        self.attach: List[dict] = [dict(a) for a in params.get("attach") or []]
        self.maps: List[dict] = [dict(m) for m in params.get("maps") or []]
        self.warnings: List[str] = []

    # ---- entry point
    def run(self) -> dict:
        self._validate()
        if self.p.get("state") == "absent":
            return self._absent()
        return self._present()

    def _validate(self) -> None:
        seen = set()
        for spec in self.attach:
            key = (spec.get("netns"), spec["interface"])
            if key in seen:
                raise InvalidInput(f"attach lists interface {_attach_label(spec)} twice")
            seen.add(key)
            xdp_request(self.root, self.name, spec).validate()
            if spec.get("netns") and not netlink.netns_exists(spec["netns"]):
                raise InvalidInput(f"network namespace {spec['netns']!r} does not exist "
                                   f"(/run/netns/{spec['netns']})", netns=spec["netns"])
            try:
                with netlink.Netlink(spec.get("netns")) as nl:
                    nl.interface(spec["interface"])
            except netlink.NoSuchInterface as exc:
                raise InvalidInput(str(exc), interface=spec["interface"], netns=spec.get("netns")) from None
        names = [m["map"] for m in self.maps]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise InvalidInput(f"maps lists {', '.join(twice)} more than once")

    # ---- state: present
    def _present(self) -> dict:
        dep = Deployment(self.root, self.name)
        old_version = dep.current_version()
        self._pinned_before = set(dep.pinned_versions()) if dep.exists() else set()
        self._maps_before = set(dep.pinned_maps()) if dep.exists() else set()
        prog = self._program(self.p)
        done: List[Callable[[], None]] = []  # undo steps for what this run switched, newest last
        try:
            attached = [self._attach_one(spec, prog, old_version, done) for spec in self.attach]
            written = [self._map_one(spec) for spec in self.maps]
        except EbpfDeployError as err:
            if self.check_mode or not (done or prog["action"] != "none"):
                raise
            raise self._undo(err, prog, old_version, done) from None
        return self._result(prog, attached, written)

    def _program(self, params: dict) -> dict:
        request = program.Request.from_params({k: params.get(k) for k in PROGRAM_KEYS})
        return program.ProgramManager(request, check_mode=self.check_mode, diff_mode=self.diff_mode).run()

    def _attach_one(self, spec: dict, prog: dict, old_version: Optional[str],
                    done: List[Callable[[], None]]) -> dict:
        request = xdp_request(self.root, self.name, spec)
        if self.check_mode and prog["action"] != "none":
            return self._predict_attach(spec, request, prog, old_version)
        result = xdp.XdpManager(request, check_mode=self.check_mode).run()
        self.warnings.extend(result.pop("warnings", []))
        if result["changed"] and not self.check_mode:
            previous = result.get("previous_prog_id")
            done.append(lambda: self._restore_attach(spec, had_program=previous is not None))
        return dict(result, program=spec["program"])

    def _predict_attach(self, spec: dict, request: "xdp.Request", prog: dict, old_version: Optional[str]) -> dict:
        """Check mode with a version that is not current yet: the interface would get its program."""
        now = None
        if old_version is not None:
            try:
                now = xdp.XdpManager(request, check_mode=True).run()
            except InvalidInput:
                now = None  # the running version lacks this program: the new one brings it
        before = (now or {}).get("diff", {}).get("before") or {}
        attached_now = bool(before.get("prog_id")) if now else False
        after = {"program": spec["program"], "version": prog["version"], "mode": spec.get("mode"),
                 "method": spec.get("method") or "link"}
        return {"changed": True, "predicted": True, "interface": spec["interface"], "netns": spec.get("netns"),
                "program": spec["program"], "action": "replace" if attached_now else "attach",
                "previous_prog_id": before.get("prog_id"), "prog_id": None, "mode": spec.get("mode"),
                "method": spec.get("method") or "link", "diff": {"before": before, "after": after}}

    def _map_one(self, spec: dict) -> dict:
        params = {k: spec.get(k) for k in MAP_KEYS}
        params.update(deployment=self.name, bpffs_root=self.root, state="present",
                      lock_timeout=self.p.get("lock_timeout"), dump=False)
        if params.get("overwrite") is None:
            params["overwrite"] = True
        if self.check_mode and not Deployment(self.root, self.name).map_pin(spec["map"]).exists():
            # a new deployment's maps appear with its first load; their entries are all new
            entries = spec.get("entries") or []
            return {"changed": bool(entries), "predicted": True, "map": spec["map"],
                    "added": [e.get("key") for e in entries], "changed_keys": [], "removed": []}
        # imported here: a deployment without map entries (or the check of one) does not pay for it
        from ansible_collections.ebpf.deploy.plugins.module_utils import _map as maps  # pylint: disable=import-outside-toplevel
        result = maps.MapManager(params, check_mode=self.check_mode, diff=self.diff_mode).run()
        result.pop("entries", None)
        return dict(result, map=spec["map"], pin=(result.get("map") or {}).get("pin"))

    # ---- undoing a run that failed after the switch
    def _restore_attach(self, spec: dict, *, had_program: bool) -> None:
        """Run after ``current`` is back: attach it again, or detach when the interface had nothing."""
        state = "present" if had_program else "absent"
        request = xdp_request(self.root, self.name, dict(spec, state=state))
        try:
            xdp.XdpManager(request).run()
        except InvalidInput:
            if state == "present":  # the old version lacks this program: leave the interface bare
                xdp.XdpManager(xdp_request(self.root, self.name, dict(spec, state="absent"))).run()
            else:
                raise

    def _undo(self, err: EbpfDeployError, prog: dict, old_version: Optional[str],
              done: List[Callable[[], None]]) -> EbpfDeployError:
        steps = []
        try:
            if prog["action"] != "none":
                if old_version is None:
                    for undo in reversed(done):
                        undo()
                    self._program(dict(self.p, state="absent", src=None, content=None, version=None))
                    steps.append(f"deployment {self.name!r} removed again")
                else:
                    self._program(dict(self.p, src=None, content=None, version=old_version, programs=None))
                    for undo in reversed(done):
                        undo()
                    steps.append(f"version {old_version} is current again")
                    if prog["version"] not in self._pinned_before:
                        steps.extend(self._unpin_new(prog["version"]))
            else:
                for undo in reversed(done):
                    undo()
            if done:
                steps.append(f"{len(done)} attachment(s) restored")
        except EbpfDeployError as undo_err:
            return EbpfDeployError(f"{err.msg}; undoing this run failed too: {undo_err.msg}",
                                   **dict(err.details, undo_error=undo_err.msg))
        return EbpfDeployError(f"{err.msg} ({'; '.join(steps)})", **dict(err.details, undone=steps))

    def _unpin_new(self, version: str) -> List[str]:
        """Unpin the version this run loaded and the maps it created (no older version uses them)."""
        with deployment_lock(self.name, float(self.p.get("lock_timeout") or 60)):
            dep = Deployment(self.root, self.name)
            dep.remove_version(version)
            steps = [f"version {version} unpinned"]
            for name, pin in sorted(dep.pinned_maps().items()):
                if name not in self._maps_before:
                    pin.unlink()
                    steps.append(f"new map {name} unpinned")
        return steps

    # ---- state: absent
    def _absent(self) -> dict:
        detached = []
        for spec in self.attach:
            request = xdp_request(self.root, self.name, dict(spec, state="absent"))
            result = xdp.XdpManager(request, check_mode=self.check_mode).run()
            self.warnings.extend(result.pop("warnings", []))
            detached.append(dict(result, program=spec.get("program")))
        prog = self._program(dict(self.p, state="absent"))
        changed = prog["changed"] or any(a["changed"] for a in detached)
        result = {"changed": changed, "version": None, "previous_version": prog.get("previous_version"),
                  "action": "remove" if prog["changed"] else "none", "program": prog, "attach": detached,
                  "maps": []}
        if self.diff_mode:
            result["diff"] = {"before": {"version": prog.get("previous_version"),
                                         "attach": {_attach_label(a): a["diff"]["before"] for a in detached}},
                              "after": {}}
        return self._finish(result)

    # ---- report
    def _result(self, prog: dict, attached: List[dict], written: List[dict]) -> dict:
        changed = prog["changed"] or any(a["changed"] for a in attached) or any(m["changed"] for m in written)
        prog_diff = prog.pop("diff", None)
        for entry in attached:
            entry.setdefault("diff", {})
        result = {
            "changed": changed, "version": prog["version"], "previous_version": prog.get("previous_version"),
            "action": prog["action"], "program": prog,
            "attach": attached, "maps": written,
        }
        if "preflight" in prog:
            result["preflight"] = prog["preflight"]
        if self.diff_mode:
            before = {"program": (prog_diff or {}).get("before"),
                      "attach": {_attach_label(a): a["diff"].get("before") for a in attached},
                      "maps": {m["map"]: (m.get("diff") or {}).get("before") for m in written}}
            after = {"program": (prog_diff or {}).get("after"),
                     "attach": {_attach_label(a): a["diff"].get("after") for a in attached},
                     "maps": {m["map"]: (m.get("diff") or {}).get("after") for m in written}}
            result["diff"] = {"before": before, "after": after}
        for entry in attached:
            entry.pop("diff", None)
        for entry in written:
            entry.pop("diff", None)
        return self._finish(result)

    def _finish(self, result: dict) -> dict:
        if self.warnings:
            result["warnings"] = list(dict.fromkeys(self.warnings))
        return result


def xdp_request(root: str, name: str, spec: dict) -> "xdp.Request":
    values = {k: spec.get(k) for k in ATTACH_KEYS}
    values.update(deployment=name, bpffs_root=root, state=spec.get("state") or "present")
    if values.get("method") is None:
        values["method"] = "link"
    if values.get("force") is None:
        values["force"] = False
    return xdp.Request.from_params(values)


def run(params: dict, *, check_mode: bool = False, diff_mode: bool = False) -> dict:
    """The module's entry (raises EbpfDeployError on failure)."""
    return DeploymentManager(params, check_mode=check_mode, diff_mode=diff_mode).run()
