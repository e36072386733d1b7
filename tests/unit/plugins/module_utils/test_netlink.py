"""_netlink's reads on its own rtnetlink socket (no pyroute2), and how it imports pyroute2 for
writes: the lean path (package __init__.py not run), the plain fallback, and a missing pyroute2.
Each case runs in a fresh interpreter, because what is in sys.modules decides the path; each
proves the reads and the IPRoute it got answer RTM_GETLINK for the loopback."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path


COLLECTIONS = Path(__file__).resolve().parents[4] / ".build" / "collections"

# What every case reports: which path was taken, whether pyroute2's __init__.py ran (it imports
# pyroute2.ndb.main), and what an IPRoute from _netlink and a Netlink wrapper read for ifindex 1.
REPORT = textwrap.dedent("""
    import json, logging, sys
    from ansible_collections.ebpf.deploy.plugins.module_utils import _netlink
    out = {"has": _netlink.HAS_PYROUTE2, "error": str(_netlink.PYROUTE2_IMPORT_ERROR or "")}
    # reads go over _netlink's own socket: pyroute2 stays unimported
    with _netlink.Netlink() as nl:
        iface = nl.interface("lo")
        out["nl_lo"] = [iface.name, iface.ifindex, nl.xdp_state(iface.ifindex).prog_id]
        out["lo_counters"] = sorted(nl.counters(iface.ifindex))
        try:
            nl.interface("ebpfd-none0")
        except _netlink.NoSuchInterface:
            out["missing"] = "NoSuchInterface"
    out["imported_by_reads"] = sorted(name for name in sys.modules if name.split(".")[0] == "pyroute2")
    try:
        api = _netlink.pyroute2_api()
    except ImportError as exc:
        out["how"], out["write_error"] = None, str(exc)
        out["leftovers"] = sorted(name for name in sys.modules if name.split(".")[0] == "pyroute2")
    else:
        out["how"] = api["how"]
        out["init_ran"] = "pyroute2.ndb.main" in sys.modules
        ipr = api["IPRoute"]()
        try:
            out["ipr_lo"] = ipr.link("get", index=1)[0].get_attr("IFLA_IFNAME")
        finally:
            ipr.close()
        out["null_handler"] = any(isinstance(h, logging.NullHandler)
                                  for h in logging.getLogger("pyroute2").handlers)
        out["init_ran_after_use"] = "pyroute2.ndb.main" in sys.modules
        # code elsewhere in the process still gets the whole package
        from pyroute2 import NDB, IPRoute
        import pyroute2
        out["late"] = [NDB.__name__, IPRoute is api["IPRoute"], bool(pyroute2.__version__),
                       "pyroute2.ndb.main" in sys.modules]
    print(json.dumps(out))
""")


def run_case(prelude: str = "") -> dict:
    env = dict(os.environ, PYTHONPATH=str(COLLECTIONS), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(prelude) + REPORT], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_reads_need_no_pyroute2_and_writes_get_it_lean():
    out = run_case()
    assert out["nl_lo"] == ["lo", 1, None]
    assert out["lo_counters"] == ["rx_bytes", "rx_dropped", "rx_packets", "tx_bytes", "tx_dropped", "tx_packets"]
    assert out["missing"] == "NoSuchInterface"
    assert out["imported_by_reads"] == []
    assert out["how"] == "lean"
    assert out["init_ran"] is False and out["init_ran_after_use"] is False
    assert out["ipr_lo"] == "lo"
    assert out["null_handler"] is True  # pyroute2's log records stay off stderr, as with the package
    assert out["late"] == ["NDB", True, True, True]  # the package completed itself on demand


def test_any_failure_of_the_lean_path_falls_back_to_the_package():
    out = run_case("""
        import importlib.util
        real = importlib.util.module_from_spec
        def broken(spec):
            if spec.name == "pyroute2":
                raise RuntimeError("lean path broken on purpose")
            return real(spec)
        importlib.util.module_from_spec = broken
    """)
    assert out["how"] == "package"
    assert out["init_ran"] is True
    assert out["ipr_lo"] == "lo"
    assert out["nl_lo"] == ["lo", 1, None]
    assert out["late"] == ["NDB", True, True, True]


def test_failure_inside_a_pyroute2_module_falls_back_to_the_package():
    # the lean path fails after some pyroute2 modules are loaded: they are forgotten, then re-imported
    out = run_case("""
        import importlib
        real = importlib.import_module
        def flaky(name, package=None):
            if name == "pyroute2.netlink.exceptions":
                raise ImportError("lean path broken on purpose")
            return real(name, package)
        importlib.import_module = flaky
    """)
    assert out["how"] == "package"
    assert out["ipr_lo"] == "lo"
    assert out["nl_lo"] == ["lo", 1, None]


def test_pyroute2_imported_already_is_used_as_it_is():
    out = run_case("import pyroute2\n")
    assert out["how"] == "package"
    assert out["ipr_lo"] == "lo"


def test_missing_pyroute2_leaves_reads_working_and_refuses_writes():
    out = run_case("""
        import sys
        class Hide:
            @staticmethod
            def find_spec(name, path=None, target=None):
                if name == "pyroute2" or name.startswith("pyroute2."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None
        sys.meta_path.insert(0, Hide)
    """)
    assert out["has"] is False and out["error"] == "No module named 'pyroute2'"
    assert out["nl_lo"] == ["lo", 1, None] and out["missing"] == "NoSuchInterface"
    assert out["how"] is None and "pyroute2 is required" in out["write_error"]
    assert out["leftovers"] == []


def _attr(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def test_parse_link_reads_name_kind_xdp_and_counters_from_the_wire_format():
    nested = 0x8000  # NLA_F_NESTED, as the kernel sets it on IFLA_XDP
    xdp = _attr(2, bytes([2])) + _attr(4, struct.pack("=I", 812)) + _attr(6, struct.pack("=I", 812))
    stats = struct.pack("=8Q", 10, 20, 1000, 2000, 0, 0, 3, 4)
    payload = (struct.pack("=BxHiII", 0, 1, 7, 0, 0) + _attr(3, b"eth0\0") + _attr(18, _attr(1, b"veth\0"))
               + _attr(43 | nested, xdp) + _attr(23, stats))
    from ansible_collections.ebpf.deploy.plugins.module_utils import _netlink

    link = _netlink.parse_link(payload)
    assert (link["index"], link["ifname"], link["kind"]) == (7, "eth0", "veth")
    state = _netlink.parse_xdp_attrs(link["xdp"])
    assert (state.mode, state.prog_id) == ("generic", 812)
    assert link["stats64"][:8] == (10, 20, 1000, 2000, 0, 0, 3, 4)
    bare = _netlink.parse_link(struct.pack("=BxHiII", 0, 1, 1, 0, 0) + _attr(3, b"lo\0"))
    assert bare["xdp"] is None and _netlink.parse_xdp_attrs(bare["xdp"]).prog_id is None
