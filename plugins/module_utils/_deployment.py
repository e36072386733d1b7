# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: the manager behind ``ebpf.deploy.bpf_deployment``.

A whole deployment in one run: the object's programs pinned as a version (the bpf_program
manager), each attachment on its hook (the xdp_attach manager for XDP, bpf_attach's for every
other hook; _attach_item decides which) and each map's entries (the bpf_map manager), in that
order, in one process and under the deployment's lock for the whole run, so that converging a
host, or asking in check mode whether it has converged, costs one module run instead of one per
part.

Every switch is a transaction of the host's record (_record): before the first change of a run
the record says *pending* (and, with ``confirm_timeout``, a watcher that outlives the module will
roll it back at the deadline); each part tells the record what it is about to replace (the program
that held an interface or a hook's link, kept pinned under ``replaced/``; the prior bytes of each
map entry).
Then:

* ``state: committed`` confirms the pending version; only then are old versions unpinned;
* ``state: rolled_back`` gives back exactly what the pending switch replaced (``current``, every
  interface's holder, every map entry), or with ``rollback_to`` returns to the version committed
  before (from the record, loading its stored object when it is no longer pinned);
* without ``confirm_timeout`` a successful run commits at once.

A run that fails after it changed something undoes itself first (attachments, ``current``, new
pins), and the record is as it was before the run. Converged = the wanted version is current,
nothing changes, and it is the committed one with nothing pending.

In check mode a version that is not pinned yet cannot be attached, so its attachments are
predicted from what the interface holds now (``predicted: true``).

The parts are composed through their typed results (``ProgramResult``, ``XdpResult``,
``MapResult``); the managers themselves come from ``Parts``, which a unit test replaces with fakes.
A failed run undoes what it did newest first: map entries written, interfaces given back to their
holders, ``current`` back and the version it loaded unpinned (by the program manager), the record.

No Ansible here: the module passes its request in and gets a result dict back.
"""
from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from ansible_collections.ebpf.deploy.plugins.module_utils import _attach_item as items
from ansible_collections.ebpf.deploy.plugins.module_utils import _netlink as netlink
from ansible_collections.ebpf.deploy.plugins.module_utils import _objects as objects
from ansible_collections.ebpf.deploy.plugins.module_utils import _options as options
from ansible_collections.ebpf.deploy.plugins.module_utils import _program as program
from ansible_collections.ebpf.deploy.plugins.module_utils import _record as record
from ansible_collections.ebpf.deploy.plugins.module_utils import _watcher as watcher
from ansible_collections.ebpf.deploy.plugins.module_utils import _xdp as xdp
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import EbpfDeployError, InvalidInput
from ansible_collections.ebpf.deploy.plugins.module_utils._lock import deployment_lock
from ansible_collections.ebpf.deploy.plugins.module_utils._request import known_params
from ansible_collections.ebpf.deploy.plugins.module_utils._pins import (
    REPLACED_DIR,
    Deployment,
    link_pin_name,
    remove_tree,
)

# what bpf_deployment passes on to each manager (the option groups of _options; the program
# manager takes the fields of its request and leaves remote_src, the action plugin's, alone)
PROGRAM_KEYS = tuple(key for key in options.names(options.PROGRAM, options.OBJECT, options.PINS, options.LOCK)
                     if key != "remote_src") + ("state", "preflight_fail_on")
ATTACH_KEYS = options.names(options.DEPLOYMENT_ATTACH)
# what the record keeps of an XDP item (the keys it kept before items named other hooks)
XDP_ITEM_KEYS = options.names(options.XDP_ATTACHMENT) + ("program",)
MAP_KEYS = options.names(options.DEPLOYMENT_MAP)
STATES = ("present", "absent", "committed", "rolled_back")
ROLLBACK_TARGETS = ("committed", "previous")


@dataclass(frozen=True)
class Request:
    """bpf_deployment's parameters (None given = the default each use says)."""
    name: str
    state: Optional[str] = None
    src: Optional[str] = None
    content: Optional[str] = None
    programs: Optional[List[str]] = None
    bpffs_root: Optional[str] = None
    checksum: Optional[str] = None
    signature: Optional[str] = None
    allowed_signers: Optional[str] = None
    signature_namespace: Optional[str] = None
    signature_content: Optional[str] = None
    allowed_signers_content: Optional[str] = None
    program_type: Optional[str] = None
    keep_versions: Optional[int] = None
    map_conflict: Optional[str] = None
    verifier_log_level: Optional[int] = None
    version: Optional[str] = None
    globals: Optional[dict] = None
    lock_timeout: Optional[float] = None
    preflight_fail_on: Optional[str] = None
    attach: List[dict] = field(default_factory=list)
    maps: List[dict] = field(default_factory=list)
    confirm_timeout: Optional[float] = None
    state_dir: Optional[str] = None
    rollback_to: Optional[str] = None

    @classmethod
    def from_params(cls, params: dict) -> "Request":
        return cls(**known_params(cls, params))

    def program_params(self, **changes) -> dict:
        """What the program manager is given (PROGRAM_KEYS), with ``changes`` over it."""
        values = {key: getattr(self, key) for key in PROGRAM_KEYS}
        values.update(changes)
        return values


class Parts:
    """The managers a deployment composes, and the few kernel steps its undo takes alone.
    Each manager takes its own request; a unit test gives fakes."""

    @staticmethod
    def program(request: "program.Request", **options) -> "program.ProgramManager":
        # freplace programs are bpf_program's and bpf_attach's: their target is another deployment's program
        return program.ProgramManager(request, freplace=False, **options)

    @staticmethod
    def xdp(request: "xdp.Request", **options) -> "xdp.XdpManager":
        return xdp.XdpManager(request, **options)

    @staticmethod
    def hook(request, **options):
        """The manager of an item on any hook but XDP: bpf_attach's."""
        return items.manager(request, **options)

    @staticmethod
    def map(request, **options):
        return _maps().MapManager(request, **options)

    @staticmethod
    def map_request(params: dict):
        return _maps().Request.from_params(params)

    @staticmethod
    def check_interface(spec: dict) -> None:
        """The attachment's network namespace and interface exist (before anything changes)."""
        if spec.get("netns") and not netlink.netns_exists(spec["netns"]):
            raise InvalidInput(f"network namespace {spec['netns']!r} does not exist "
                               f"(/run/netns/{spec['netns']})", netns=spec["netns"])
        try:
            with netlink.Netlink(spec.get("netns")) as nl:
                nl.interface(spec["interface"])
        except netlink.NoSuchInterface as exc:
            raise InvalidInput(str(exc), interface=spec["interface"], netns=spec.get("netns")) from None

    @staticmethod
    def keep_program(bpf: "xdp.Bpf", prog_id: int, path: str) -> None:
        xdp.keep_program(bpf, prog_id, path)

    @staticmethod
    def give_back(root: str, held: dict, *, our_link_pin: str) -> str:
        return xdp.give_back(root, held["interface"], held.get("netns"), held=held, prog_pin=held.get("kept_pin"),
                             our_link_pin=our_link_pin)

    @staticmethod
    def give_back_hook(root: str, name: str, held: dict) -> str:
        return items.give_back(root, name, held)

    @staticmethod
    def restore_entries(pin: str, prior: List[dict]) -> int:
        return _maps().restore_entries(pin, prior)


def _as_error(err: Exception) -> EbpfDeployError:
    """Any failure as the collection's error (an OSError after the switch must reach the undo too)."""
    if isinstance(err, EbpfDeployError):
        return err
    if isinstance(err, OSError):
        where = f" ({err.filename})" if err.filename else ""
        return EbpfDeployError(f"{err.strerror or err}{where}", errno=err.errno)
    return EbpfDeployError(f"{type(err).__name__}: {err}")


class DeploymentManager:
    """One bpf_deployment task: ``DeploymentManager(request, check_mode=..., diff_mode=...).run()``."""

    def __init__(self, request: Request, *, check_mode: bool = False, diff_mode: bool = False,
                 watcher_token: Optional[str] = None, keep_record: bool = True, parts: Optional[Parts] = None) -> None:
        self.req = request
        self.check_mode = check_mode
        self.diff_mode = diff_mode
        self.parts = parts or Parts()
        self.name = request.name
        self.root = request.bpffs_root or program.DEFAULT_BPFFS_ROOT
        self.attach: List[dict] = [dict(a) for a in request.attach or []]
        self.items: List[items.Item] = []   # self.attach with each hook decided (by _validate)
        self.maps: List[dict] = [dict(m) for m in request.maps or []]
        self.warnings: List[str] = []
        self.record = record.Record(request.state_dir or record.DEFAULT_STATE_DIR, self.root, self.name)
        self.watcher_token = watcher_token   # set when the confirm watcher itself runs the rollback
        self.keep_record = keep_record       # False: converge the kernel only (a rollback or restore step)
        self.state: dict = {}
        self.txn: Optional[dict] = None      # the record with this run's pending switch, once it changes
        self._program_manager: Optional[program.ProgramManager] = None
        self._undoing = False                # an undo or rollback moves `current` without a new pending switch
        self._state_at_start: dict = {}
        self._current_at_start: Optional[str] = None
        self._record_changed = False
        # what this run changed, newest last: (what, undo) -> the lines the failure message says
        self._done: List[Tuple[str, Callable[[], List[str]]]] = []
        # attachments that go back only once `current` is back (no holder recorded to give back)
        self._reattach: List[Callable[[], None]] = []

    # ---- entry point
    def run(self) -> dict:
        state = self.req.state or "present"
        if state not in STATES:
            raise InvalidInput(f"state must be one of {', '.join(STATES)}, got {state!r}")
        timeout = self.req.confirm_timeout
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0 or timeout > 86400 * 7):
            raise InvalidInput(f"confirm_timeout must be between 0 and 604800 seconds, got {timeout!r}")
        if state in ("present", "absent"):
            self._validate()
        with deployment_lock(self.name, float(self.req.lock_timeout or 60)):
            self.state = self.record.state()   # a torn or foreign record refuses before anything changes
            self._state_at_start = self.state
            if not self.state.get("pending") and not self.check_mode:
                # programs kept for a pending switch that was settled by a run killed before its end
                remove_tree(Deployment(self.root, self.name).path / REPLACED_DIR)
            if state == "absent":
                return self._absent()
            if state == "committed":
                return self._commit()
            if state == "rolled_back":
                return self._rollback()
            return self._present()

    def _validate(self) -> None:
        sections = self._sections() if self.attach else {}   # each item's hook, or its program's type
        self.items = []
        seen = set()
        for spec in self.attach:
            item = items.resolve(spec, root=self.root, name=self.name, sections=sections,
                                 program_type=self.req.program_type)
            if item.label in seen:
                raise InvalidInput(f"attach lists {'interface ' if item.xdp else ''}{item.label} twice")
            seen.add(item.label)
            if item.xdp:
                xdp_request(self.root, self.name, spec).validate()
                self.parts.check_interface(spec)
            self.items.append(item)
        names = [m["map"] for m in self.maps]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise InvalidInput(f"maps lists {', '.join(twice)} more than once")

    def _sections(self) -> Dict[str, str]:
        """{program: ELF section} of the object this run deploys (or of the version it names, or
        of the committed or pending one: a state absent without src): the hook of an item that
        names none, the program type of all."""
        req = self.req
        try:
            if req.content is not None or req.src:
                return items.program_sections(objects.read_source(req.src, req.content, label=req.src or "object"))
            state = self.record.state()
            version = req.version or state.get("committed") or (state.get("pending") or {}).get("version")
            return items.program_sections(self.record.version_object(version)) if version else {}
        except (EbpfDeployError, OSError, ValueError):
            return {}   # the program manager refuses an object it cannot read, in its own words

    # ---- the record's transaction
    def _ensure_pending(self, version: Optional[str] = None) -> None:
        """Before the first change: the record says pending (and the watcher is armed)."""
        if self.check_mode or not self.keep_record or self._undoing:
            return
        if self.txn is not None:
            if version and self.txn["pending"]["version"] != version:
                self.txn["pending"]["version"] = version
                self.record.write_state(self.txn)
            return
        old = self.state.get("pending") or {}
        timeout = self.req.confirm_timeout
        deadline = time.time() + float(timeout) if timeout else None
        token = secrets.token_hex(8)
        txn = record.pending_begin(self.state, version=version or self._current_at_start,
                                   previous=self.state.get("committed") or self._current_at_start,
                                   deadline=deadline, token=token)
        if deadline is not None:
            # armed first: a watcher whose token never reached the record finds nothing to do
            txn["pending"]["watcher"] = watcher.start(state_dir=str(self.record.state_dir), bpffs_root=self.root,
                                                      name=self.name, token=token, deadline=deadline)
        self.record.write_state(txn)   # from here on a killed run leaves a pending switch behind
        if old.get("watcher"):
            watcher.cancel(old["watcher"], old.get("token") or "")
        self.txn = txn

    def _on_switch(self, version: str, old: Optional[str]) -> None:
        self._ensure_pending(version)
        self._did_switch(version, old)

    def _did_switch(self, version: str, old: Optional[str]) -> None:
        """``current`` moves (or moved) from ``old`` to ``version``: its undo joins the journal once."""
        if self._undoing or any(what == "program" for what, _undo in self._done):
            return
        self._done.append(("program", lambda: self._undo_switch(version, old)))

    def _before_attach(self, item: "items.Item") -> Callable[[dict, "xdp.Bpf"], None]:
        label, spec = item.label, item.spec

        def remember(held: dict, bpf: "xdp.Bpf") -> None:
            self._ensure_pending()
            if self.txn is None or label in self.txn["pending"]["replaced"]["attach"]:
                return
            kept = None
            if held.get("prog_id"):
                kept = str(Deployment(self.root, self.name).path / REPLACED_DIR
                           / (link_pin_name(spec["interface"], spec.get("netns")) if item.xdp else label))
                self.parts.keep_program(bpf, held["prog_id"], kept)
            if item.xdp:
                held = dict(held, interface=spec["interface"], netns=spec.get("netns"), kept_pin=kept)
            else:   # what give_back needs to find the hook again, in a later run or at the deadline
                held = dict(held, hook=item.hook, spec={k: spec.get(k) for k in ATTACH_KEYS}, kept_pin=kept)
            record.remember_holder(self.txn["pending"], label, held)
            self.record.write_state(self.txn)
            # recorded before the change: an attach that failed halfway is given back too
            self._done.append((label, lambda: self._give_back_one(label, held)))
        return remember

    def _before_map_write(self, map_name: str) -> Callable[[str, List[dict]], None]:
        def remember(pin: str, prior: List[dict]) -> None:
            self._ensure_pending()
            if self.txn is not None:
                record.remember_map_writes(self.txn["pending"], map_name, pin, prior)
                self.record.write_state(self.txn)
            self._done.append((f"map {map_name}", lambda: self._restore_map(map_name, pin, prior)))
        return remember

    def _commit_state(self, state: dict, *, by: str) -> List[str]:
        """Commit the pending switch of ``state``: the record first, then the watcher stops and
        versions beyond keep_versions go. Returns the versions unpinned."""
        pending = state["pending"]
        version = pending["version"]
        previous_committed = state.get("committed")
        new_state = record.committed(state, version, by=by)
        self.record.write_state(new_state)
        self.state = new_state
        self.txn = None
        self._end_switch(pending)
        dep = Deployment(self.root, self.name)
        keep = int(self.req.keep_versions if self.req.keep_versions is not None else 1)
        removed = program.prune_versions(dep, keep=keep, current=version, previous=previous_committed,
                                         protect=(version,))
        self.record.forget_versions(list(new_state.get("history") or []) + [version])
        watcher.ensure_runtime(str(self.record.state_dir))   # what the restore at boot runs
        return removed

    # ---- state: present
    def _present(self) -> dict:
        dep = Deployment(self.root, self.name)
        old_version = dep.current_version()
        self._current_at_start = old_version
        self._pinned_before = set(dep.pinned_versions()) if dep.exists() else set()
        self._maps_before = set(dep.pinned_maps()) if dep.exists() else set()
        try:
            prog = self._program(self.req.program_params())
            if prog.action != "none":
                self._did_switch(prog.version, old_version)
            self._refuse_per_version_tables(prog)
            attached = [self._attach_one(item, prog, old_version) for item in self.items]
            written = [(spec["map"], self._map_one(spec)) for spec in self.maps]
            removed = self._settle(prog, attached, [result for _name, result in written])
        except (EbpfDeployError, OSError, ValueError) as exc:
            err = _as_error(exc)
            if self.check_mode or not (self._done or self._reattach or self.txn is not None):
                raise err from None
            raise self._undo(err) from None
        if removed:
            prog.removed_versions = sorted(set(prog.removed_versions or []) | set(removed))
        return self._result(prog, attached, written)

    def _settle(self, prog: "program.ProgramResult", attached: List["xdp.XdpResult"], written: list) -> List[str]:
        """After every part succeeded: keep the version in the record, then commit at once or
        leave it pending. Returns the versions unpinned by an immediate commit."""
        version = prog.version
        kernel_changed = prog.changed or any(a.changed for a in attached) or any(m.changed for m in written)
        converged = (not kernel_changed and not self.state.get("pending")
                     and self.state.get("committed") == version)
        self._record_changed = not converged and self.keep_record
        if converged or self.check_mode or not self.keep_record:
            return []
        self._ensure_pending(version)   # an unchanged kernel with an unconfirmed record: pending again
        self._store_version(version, prog)
        if self.req.confirm_timeout is None:
            return self._commit_state(self.txn, by="run")
        return []

    def _store_version(self, version: str, prog: "program.ProgramResult") -> None:
        data = self._program_manager.object_data if self._program_manager else None
        known = self.record.version_spec(version) or {}
        spec = {
            "digest": prog.digest or known.get("digest"),
            "source": (self._program_manager.req.label if data is not None and self._program_manager else
                       known.get("source")),
            "programs": [p["name"] for p in prog.programs or []] or known.get("programs"),
            "program_type": self.req.program_type if data is not None else known.get("program_type"),
            # as they read back; a rollback or a restore loads the version with them again
            "globals": prog.globals if data is not None else known.get("globals"),
            "map_conflict": self.req.map_conflict or "fail",
            "attach": [{k: item.spec.get(k) for k in (XDP_ITEM_KEYS if item.xdp else ATTACH_KEYS)}
                       for item in self.items],
            "maps": [{k: m.get(k) for k in MAP_KEYS} for m in self.maps],
            # verified again before the stored object is loaded (a restore at boot)
            "signed": (self._program_manager.signed.as_record() if data is not None and self._program_manager
                       and self._program_manager.signed else known.get("signed")),
            "recorded_at": time.time(),
        }
        self.record.store_version(version, spec, data)

    def _program(self, params: dict) -> "program.ProgramResult":
        request = program.Request.from_params({k: params.get(k) for k in PROGRAM_KEYS})
        manager = self.parts.program(request, check_mode=self.check_mode, diff_mode=self.diff_mode,
                                     on_switch=self._on_switch, defer_prune=True)
        self._program_manager = manager
        return manager.run()

    def _attach_request(self, item: "items.Item", **changes):
        """The request of the manager that attaches ``item`` (XDP's, or bpf_attach's)."""
        if item.xdp:
            return xdp_request(self.root, self.name, dict(item.spec, **changes))
        return items.request(self.root, self.name, item.spec, **changes)

    def _attach_manager(self, item: "items.Item"):
        return self.parts.xdp if item.xdp else self.parts.hook

    def _attach_one(self, item: "items.Item", prog: "program.ProgramResult", old_version: Optional[str]):
        request = self._attach_request(item)
        if self.check_mode and prog.action != "none":
            return self._predict_attach(item, request, prog, old_version)
        given_back = len(self._done)
        result = self._attach_manager(item)(request, check_mode=self.check_mode, diff_mode=self.diff_mode,
                                            before_change=self._before_attach(item)).run()
        self.warnings.extend(result.warnings)
        result.warnings = []
        if result.changed and not self.check_mode and len(self._done) == given_back:
            # no holder recorded to give back (no record, or an earlier pending switch has it)
            had_program = result.previous_prog_id is not None
            self._reattach.append(lambda: self._restore_attach(item, had_program=had_program))
        result.extra["program"] = item.spec["program"]
        return result

    def _predict_attach(self, item: "items.Item", request, prog: "program.ProgramResult",
                        old_version: Optional[str]):
        """Check mode with a version that is not current yet: the target would get its program."""
        now = None
        if old_version is not None:
            try:
                now = self._attach_manager(item)(request, check_mode=True).run()
            except InvalidInput:
                now = None  # the running version lacks this program: the new one brings it
        before = ((now.diff if now else None) or {}).get("before") or {}
        attached_now = bool(before.get("prog_id")) if now else False
        spec = item.spec
        if not item.xdp:
            return _predict_hook(item, before, prog.version)
        after = {"program": spec["program"], "version": prog.version, "mode": spec.get("mode"),
                 "method": spec.get("method") or "link"}
        return xdp.XdpResult(changed=True, action="replace" if attached_now else "attach",
                             previous_prog_id=before.get("prog_id"), diff={"before": before, "after": after},
                             extra={"predicted": True, "interface": spec["interface"], "netns": spec.get("netns"),
                                    "program": spec["program"], "prog_id": None, "mode": spec.get("mode"),
                                    "method": spec.get("method") or "link"})

    def _refuse_per_version_tables(self, prog: "program.ProgramResult") -> None:
        """A maps: entry naming the version's own PROG_ARRAY or map of maps is refused before any
        interface moves."""
        own = {m["name"]: m for m in prog.extra.get("maps") or [] if m.get("per_version")}
        for spec in self.maps:
            if spec["map"] in own:
                table = own[spec["map"]]
                raise _maps().per_version_table_refused(self.name, spec["map"], table["pin"], table["type"])

    def _map_one(self, spec: dict):
        """The bpf_map manager's result for one maps[] entry (predicted for a map not pinned yet)."""
        params = {k: spec.get(k) for k in MAP_KEYS}
        params.update(deployment=self.name, bpffs_root=self.root, state="present",
                      lock_timeout=self.req.lock_timeout, dump=False)
        if params.get("overwrite") is None:
            params["overwrite"] = True
        if self.check_mode and not Deployment(self.root, self.name).map_pin(spec["map"]).exists():
            # a new deployment's maps appear with its first load; their entries are all new
            entries = spec.get("entries") or []
            return _maps().MapResult(changed=bool(entries), added=[e.get("key") for e in entries],
                                     extra={"predicted": True})
        return self.parts.map(self.parts.map_request(params), check_mode=self.check_mode, diff_mode=self.diff_mode,
                              before_write=self._before_map_write(spec["map"])).run()

    # ---- undoing a run that failed after it changed something
    def _restore_attach(self, item: "items.Item", *, had_program: bool) -> None:
        """Run after ``current`` is back: attach it again, or detach when the target had nothing."""
        state = "present" if had_program else "absent"
        manager = self._attach_manager(item)
        try:
            manager(self._attach_request(item, state=state, force=True)).run()
        except InvalidInput:
            if state == "present":  # the old version lacks this program: leave the target bare
                manager(self._attach_request(item, state="absent")).run()
            else:
                raise

    def _undo(self, err: EbpfDeployError) -> EbpfDeployError:
        """Undo what this run changed, newest first, then the record as it was before the run."""
        self._undoing = True
        steps: List[str] = []
        try:
            for _what, undo in reversed(self._done):
                steps.extend(undo())
            if not any(what == "program" for what, _undo in self._done):
                steps.extend(self._reattach_all())
            self._drop_txn()
        except (EbpfDeployError, OSError) as exc:
            undo_err = _as_error(exc)
            return EbpfDeployError(f"{err.msg}; undoing this run failed too: {undo_err.msg}",
                                   **dict(err.details, undo_error=undo_err.msg))
        return EbpfDeployError(f"{err.msg} ({'; '.join(steps)})", **dict(err.details, undone=steps))

    def _undo_switch(self, version: str, old_version: Optional[str]) -> List[str]:
        """``current`` back to ``old_version`` (a new deployment removed), the attachments that
        follow it put back, and the version this run loaded unpinned by the program manager."""
        if old_version is None:
            steps = self._reattach_all()
            self._program(self.req.program_params(state="absent", src=None, content=None, version=None))
            return steps + [f"deployment {self.name!r} removed again"]
        self._program(self.req.program_params(src=None, content=None, version=old_version, programs=None))
        steps = self._reattach_all()
        steps.append(f"version {old_version} is current again")
        if version not in self._pinned_before:
            steps.extend(self._program_manager.unpin_new(version, maps_before=self._maps_before))
        return steps

    def _reattach_all(self) -> List[str]:
        for undo in reversed(self._reattach):
            undo()
        return [f"{len(self._reattach)} attachment(s) restored"] if self._reattach else []

    def _give_back_one(self, label: str, held: dict) -> List[str]:
        if held.get("hook"):
            action = self.parts.give_back_hook(self.root, self.name, held)
        else:
            action = self.parts.give_back(self.root, held, our_link_pin=str(
                Deployment(self.root, self.name).link_pin(held["interface"], held.get("netns"))))
        if action == "none":
            return []
        what = f"program id {held['prog_id']}" if held.get("prog_id") else "nothing"
        return [f"{label} given back to {what}"]

    def _restore_map(self, name: str, pin: str, prior: List[dict]) -> List[str]:
        if not prior:
            return []
        self.parts.restore_entries(pin, prior)
        return [f"map {name}: {len(prior)} entries restored"]

    def _drop_txn(self) -> None:
        """The record as it was before this run (its watcher stopped, its kept programs unpinned)."""
        if self.txn is None:
            return
        before = self._state_at_start
        # an earlier pending switch still needs what it kept under replaced/
        self._end_switch(self.txn["pending"], drop_kept=before.get("pending") is None)
        if before.get("committed") or before.get("history") or before.get("pending"):
            self.record.write_state(before)
        else:
            self.record.remove()
        self.txn = None
        self.state = before

    def _end_switch(self, pending: dict, *, drop_kept: bool = True) -> None:
        """A pending switch is over (committed, rolled back or dropped): its watcher stops, unless
        it is the watcher running this, and the programs kept under ``replaced/`` go."""
        if self.watcher_token != pending.get("token"):
            watcher.cancel(pending.get("watcher"), pending.get("token") or "")
        if drop_kept:
            remove_tree(Deployment(self.root, self.name).path / REPLACED_DIR)

    def _give_back(self, pending: dict, *, steps: List[str]) -> None:
        """Every interface the pending switch took goes back to what held it before."""
        for label, held in sorted(pending["replaced"]["attach"].items()):
            steps.extend(self._give_back_one(label, held))

    # ---- state: committed
    def _commit(self) -> dict:
        dep = Deployment(self.root, self.name)
        current = dep.current_version()
        pending = self.state.get("pending")
        wanted = self.req.version
        last = self.state.get("last") or {}
        if wanted and not (pending and pending.get("version") == wanted):
            if self.state.get("committed") == wanted and not pending:
                return self._finish(self._record_result(changed=False, version=current, action="none"))
            why = (f"it was rolled back by the {last.get('by')} (from {last.get('from')})"
                   if last.get("action") == "rollback" and last.get("from") == wanted else
                   f"pending: {(pending or {}).get('version') or 'nothing'}, committed: {self.state.get('committed')}")
            raise InvalidInput(f"version {wanted} of deployment {self.name!r} is not pending, nothing to commit: "
                               f"{why}", record=record.summary(self.state))
        if not pending:
            if last.get("action") == "rollback" and last.get("by") == "watcher" and last.get("from"):
                raise InvalidInput(f"deployment {self.name!r} has nothing pending to commit: the switch to "
                                   f"{last['from']} was rolled back by the host at its confirm deadline",
                                   record=record.summary(self.state))
            if self.state.get("committed") is None and current is None:
                raise InvalidInput(f"deployment {self.name!r} has nothing to commit: no version under {self.root}")
            if self.state.get("committed") not in (None, current):
                raise InvalidInput(f"deployment {self.name!r} has nothing pending, and its current version "
                                   f"{current} is not the committed {self.state.get('committed')}: "
                                   "deploy it again or roll it back")
            if self.state.get("committed") is None:
                raise InvalidInput(f"deployment {self.name!r} has no record of version {current} (it was not "
                                   "deployed with bpf_deployment): deploy it with bpf_deployment first")
            return self._finish(self._record_result(changed=False, version=current, action="none"))
        if pending.get("version") != current:
            raise InvalidInput(f"the pending version {pending.get('version')} of deployment {self.name!r} is not "
                               f"current (current: {current or 'none'}); roll it back instead",
                               pending_version=pending.get("version"), current_version=current)
        if self.record.version_spec(pending["version"]) is None:
            raise InvalidInput(f"the pending switch of deployment {self.name!r} did not finish (version "
                               f"{pending['version']} was never recorded); roll it back or deploy it again")
        before = record.summary(self.state)
        if self.check_mode:
            after_state, removed = record.committed(self.state, pending["version"], by="controller"), []
        else:
            removed = self._commit_state(self.state, by="controller")
            after_state = self.state   # what _commit_state wrote
        result = self._record_result(changed=True, version=pending["version"], action="commit",
                                     removed_versions=removed)
        result["record"] = record.summary(after_state)
        if self.diff_mode:
            result["diff"] = {"before": {"record": before}, "after": {"record": result["record"]}}
        return self._finish(result)

    # ---- state: rolled_back
    def _rollback(self) -> dict:
        self._undoing = True   # moving `current` back is no new pending switch
        target = self.req.rollback_to or "committed"
        if target not in ROLLBACK_TARGETS:
            target = program.validate_version(target)
        pending = self.state.get("pending")
        if self.watcher_token is not None and (not pending or pending.get("token") != self.watcher_token):
            return self._finish(self._record_result(changed=False, version=self._current(), action="none"))
        steps: List[str] = []
        if pending:
            if self.check_mode:
                return self._finish(self._record_result(
                    changed=True, version=self._current(), action="rollback", would_restore=self._would_restore(pending)))
            steps = self._undo_pending(pending)
            if target in ROLLBACK_TARGETS or target == self.state.get("committed"):
                return self._finish(self._record_result(changed=True, version=self._current(), action="rollback",
                                                        undone=steps))
        committed = self.state.get("committed")
        if target == "committed":
            return self._finish(self._record_result(changed=bool(steps), version=self._current(),
                                                    action="rollback" if steps else "none", undone=steps))
        if target == "previous":
            wanted = record.previous_committed(self.state)
            if wanted is None:
                last = self.state.get("last") or {}
                if last.get("action") == "rollback" and last.get("version") == committed:
                    return self._finish(self._record_result(changed=bool(steps), version=self._current(),
                                                            action="none", undone=steps))
                raise InvalidInput(f"deployment {self.name!r} has no version committed before {committed or 'none'} "
                                   "to roll back to", history=self.state.get("history"))
        else:
            wanted = target
        if wanted == committed:
            return self._finish(self._record_result(changed=bool(steps), version=self._current(), action="none"))
        if self.check_mode:
            return self._finish(self._record_result(changed=True, version=wanted, action="rollback"))
        self._apply_version(wanted, drop=self._spec_attach(committed))
        new_state = record.rolled_back(self.state, to=wanted, failed=committed, by="controller")
        self.record.write_state(new_state)
        self.state = new_state
        steps.append(f"version {wanted} is committed again (from {committed})")
        return self._finish(self._record_result(changed=True, version=wanted, action="rollback", undone=steps))

    def _current(self) -> Optional[str]:
        return Deployment(self.root, self.name).current_version()

    def _spec_attach(self, version: Optional[str]) -> List[dict]:
        spec = self.record.version_spec(version) if version else None
        return list((spec or {}).get("attach") or [])

    def _would_restore(self, pending: dict) -> dict:
        return {"version": pending.get("previous"),
                "attach": {label: held.get("prog_id") for label, held in pending["replaced"]["attach"].items()},
                "maps": {name: len(entry["entries"]) for name, entry in pending["replaced"]["maps"].items()}}

    def _undo_pending(self, pending: dict) -> List[str]:
        """Give back exactly what the pending switch replaced, then record the rollback."""
        previous = pending.get("previous")
        dep = Deployment(self.root, self.name)
        steps = []
        if previous and dep.current_version() != previous:
            self._ensure_version(previous)
            steps.append(f"version {previous} is current again")
        self._give_back(pending, steps=steps)
        for name, entry in sorted(pending["replaced"]["maps"].items()):
            if entry["entries"] and dep.map_pin(name).exists():
                steps.extend(self._restore_map(name, entry["pin"], entry["entries"]))
        if not previous:
            self._program({"name": self.name, "bpffs_root": self.root, "state": "absent",
                           "lock_timeout": self.req.lock_timeout or 60})
            steps.append(f"deployment {self.name!r} removed (it was new)")
        by = "watcher" if self.watcher_token else "controller"
        if not previous and not self.state.get("committed"):
            self.record.remove()
            self.state = record.empty_state(self.name, self.root)
        else:
            new_state = record.rolled_back(self.state, to=self.state.get("committed") or previous,
                                           failed=pending.get("version"), by=by)
            self.record.write_state(new_state)
            self.state = new_state
        # after the record: a run killed before it finds the kept programs to give back again
        self._end_switch(pending)
        return steps

    def _ensure_version(self, version: str) -> None:
        """``version`` current: switched to when pinned, loaded from the record's object otherwise."""
        dep = Deployment(self.root, self.name)
        params = {"name": self.name, "bpffs_root": self.root, "lock_timeout": self.req.lock_timeout or 60,
                  "keep_versions": 1, "state": "present"}
        if version in dep.pinned_versions():
            self._program(dict(params, version=version))
            return
        spec = self.record.version_spec(version)
        if spec is None:
            raise InvalidInput(f"version {version} of deployment {self.name!r} is neither pinned nor recorded")
        data = self.record.version_object(version)
        signed = spec.get("signed") or {}
        self._program(dict(params, version=version, content=base64.b64encode(data).decode(), src=spec.get("source"),
                           programs=spec.get("programs"), program_type=spec.get("program_type"),
                           globals=spec.get("globals"),
                           map_conflict=spec.get("map_conflict") or "fail",
                           signature_content=signed.get("signature"), allowed_signers_content=signed.get("allowed_signers"),
                           signature_namespace=signed.get("namespace")))

    def _apply_version(self, version: str, *, drop: Optional[List[dict]] = None) -> dict:
        """Converge the kernel to a recorded version's spec (programs, attachments, map entries);
        interfaces of ``drop`` that the version does not attach are detached."""
        spec = self.record.version_spec(version)
        if spec is None:
            raise InvalidInput(f"the record of deployment {self.name!r} has no version {version}")
        self._ensure_version(version)
        keep = {self._recorded_item(a).label for a in spec.get("attach") or []}
        for gone in drop or []:
            item = self._recorded_item(gone)
            if item.label not in keep:
                self._attach_manager(item)(self._attach_request(item, state="absent")).run()
        params = {"name": self.name, "bpffs_root": self.root, "state_dir": str(self.record.state_dir),
                  "version": version, "attach": [dict(a, force=True) for a in spec.get("attach") or []],
                  "maps": spec.get("maps") or [], "lock_timeout": self.req.lock_timeout or 60,
                  "keep_versions": 1}
        return DeploymentManager(Request.from_params(params), keep_record=False, parts=self.parts).run()

    def _recorded_item(self, spec: dict) -> "items.Item":
        """An item of a recorded version (its hook was decided when it was recorded)."""
        return items.resolve(spec, root=self.root, name=self.name, sections={})

    # ---- state: absent
    def _absent(self) -> dict:
        detached = []
        for item in self.items:
            request = self._attach_request(item, state="absent")
            result = self._attach_manager(item)(request, check_mode=self.check_mode, diff_mode=self.diff_mode).run()
            self.warnings.extend(result.warnings)
            result.warnings = []
            result.extra["program"] = item.spec.get("program")
            detached.append(result)
        prog = self._program(self.req.program_params(state="absent"))
        had_record = self.record.path.exists()
        if had_record and not self.check_mode:
            pending = self.state.get("pending") or {}
            watcher.cancel(pending.get("watcher"), pending.get("token") or "")
            self.record.remove()
        changed = prog.changed or any(a.changed for a in detached) or had_record
        result = {"changed": changed, "version": None, "previous_version": prog.previous_version,
                  "action": "remove" if prog.changed else "none", "program": prog.as_dict(),
                  "attach": [a.as_dict() for a in detached],
                  "maps": [], "committed": None, "pending": False, "record": None}
        if self.diff_mode:
            result["diff"] = {"before": {"version": prog.previous_version,
                                         "attach": {item.label: a.diff["before"]
                                                    for item, a in zip(self.items, detached)},
                                         "record": record.summary(self.state)},
                              "after": {}}
        return self._finish(result)

    # ---- report
    def _record_result(self, *, changed: bool, version: Optional[str], action: str, **extra) -> dict:
        summary = record.summary(self.state)
        result = {"changed": changed, "version": version, "action": action,
                  "committed": summary["committed"], "pending": summary["pending"] is not None,
                  "record": summary}
        result.update({k: v for k, v in extra.items() if v is not None})
        return result

    def _result(self, prog: "program.ProgramResult", attached: List["xdp.XdpResult"], written: list) -> dict:
        """The module's result from the parts' typed results (``written``: (map name, MapResult))."""
        changed = (prog.changed or any(a.changed for a in attached) or any(m.changed for _n, m in written)
                   or self._record_changed)
        state = self.txn if self.txn is not None and not self.check_mode else self.state
        summary = record.summary(state)
        result = {
            "changed": changed, "version": prog.version, "previous_version": prog.previous_version,
            "action": prog.action, "program": prog.as_dict(with_diff=False),
            "attach": [a.as_dict(with_diff=False) for a in attached],
            "maps": [_map_entry(name, m) for name, m in written],
            "committed": summary["committed"], "pending": summary["pending"] is not None, "record": summary,
        }
        if prog.preflight is not None:
            result["preflight"] = prog.preflight
        if self.diff_mode:
            before = {"program": (prog.diff or {}).get("before"),
                      "attach": {item.label: (a.diff or {}).get("before") for item, a in zip(self.items, attached)},
                      "maps": {name: (m.diff or {}).get("before") for name, m in written},
                      "record": record.summary(self._state_at_start)}
            after = {"program": (prog.diff or {}).get("after"),
                     "attach": {item.label: (a.diff or {}).get("after") for item, a in zip(self.items, attached)},
                     "maps": {name: (m.diff or {}).get("after") for name, m in written},
                     "record": summary}
            result["diff"] = {"before": before, "after": after}
        return self._finish(result)

    def _finish(self, result: dict) -> dict:
        if self.warnings:
            result["warnings"] = list(dict.fromkeys(self.warnings))
        return result


def _map_entry(name: str, result) -> dict:
    """One maps[] entry of the result: the bpf_map result under the map's name, with its pin
    (none for a prediction), without the entries (a deployment run does not read them back)."""
    entry = result.as_dict(with_diff=False)
    entry.pop("entries", None)
    entry["map"] = name
    if result.map is not None:
        entry["pin"] = result.pin
    return entry


def _maps():
    """The map manager, imported only when a run touches map entries (a plain run does not pay)."""
    from ansible_collections.ebpf.deploy.plugins.module_utils import _map as maps  # pylint: disable=import-outside-toplevel
    return maps


def _predict_hook(item: "items.Item", before: dict, version: Optional[str]):
    """A hook item in check mode before its version is pinned: what bpf_attach would do."""
    from ansible_collections.ebpf.deploy.plugins.module_utils._attach import AttachResult  # pylint: disable=import-outside-toplevel
    from ansible_collections.ebpf.deploy.plugins.module_utils._hooks import hook  # pylint: disable=import-outside-toplevel
    row = hook(item.hook)
    action = ("attach" if not before.get("prog_id") else "update" if row.updatable
              else "overlap" if row.overlap else "detach_attach")
    after = {"program": item.spec["program"], "version": version, "hook": item.hook}
    return AttachResult(changed=True, action=action, previous_prog_id=before.get("prog_id"),
                        diff={"before": before, "after": after},
                        extra={"predicted": True, "hook": item.hook, "target": item.result_target,
                               "program": item.spec["program"], "prog_id": None, "link_pin": None, "link_id": None})


def xdp_request(root: str, name: str, spec: dict) -> "xdp.Request":
    values = {k: spec.get(k) for k in ATTACH_KEYS}
    values.update(deployment=name, bpffs_root=root, state=spec.get("state") or "present")
    if values.get("method") is None:
        values["method"] = "link"
    if values.get("force") is None:
        values["force"] = False
    return xdp.Request.from_params(values)


def restore(rec: "record.Record") -> dict:
    """At boot: the committed version of one recorded deployment back in the kernel (loaded from
    its stored object when the bpffs is fresh), a pending switch dropped. Returns what was done."""
    with deployment_lock(rec.name, 300):
        state = rec.state()
        pending = state.get("pending")
        committed = state.get("committed")
        manager = DeploymentManager(Request(name=rec.name, bpffs_root=rec.bpffs_root, state_dir=str(rec.state_dir),
                                            lock_timeout=300))
        manager.state = state
        manager._undoing = True   # pylint: disable=protected-access
        result = {"version": None, "attach": []}
        if committed:
            result = manager._apply_version(committed)   # pylint: disable=protected-access
        rec.write_state(dict(state, pending=None, last={"action": "restore", "version": committed, "at": time.time(),
                                                        "skipped_pending": (pending or {}).get("version")}))
        return dict(result, skipped_pending=(pending or {}).get("version"))


def run(params: dict, *, check_mode: bool = False, diff_mode: bool = False) -> dict:
    """The module's entry (raises EbpfDeployError on failure). With ``health``, a successful switch
    is soaked and judged on the host after the run, its lock released (the watcher may need it)."""
    request = Request.from_params(params)
    health = params.get("health") if (request.state or "present") == "present" else None
    if health:
        from ansible_collections.ebpf.deploy.plugins.module_utils import _health  # pylint: disable=import-outside-toplevel
        _health.check_request(health, request.confirm_timeout)
    result = DeploymentManager(request, check_mode=check_mode, diff_mode=diff_mode).run()
    if health and check_mode:
        # nothing was switched, so there is nothing to soak or judge: say so rather than give a verdict
        result["health"] = {"passed": None, "checks": [], "skipped": "check mode: nothing was switched or judged"}
    elif health:
        deployments = health.get("deployments") or [{"name": request.name, "attach": request.attach or []}]
        result["health"] = _health.on_host(health, deployments=deployments, bpffs_root=request.bpffs_root or program.DEFAULT_BPFFS_ROOT)
    return result
