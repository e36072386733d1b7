"""How _netlink imports pyroute2: the lean path (package __init__.py not run), the plain fallback,
and a missing pyroute2. Each case runs in a fresh interpreter, because what is in sys.modules
decides the path; each proves the IPRoute it got answers RTM_GETLINK for the loopback."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

COLLECTIONS = Path(__file__).resolve().parents[4] / ".build" / "collections"

# What every case reports: which path was taken, whether pyroute2's __init__.py ran (it imports
# pyroute2.ndb.main), and what an IPRoute from _netlink and a Netlink wrapper read for ifindex 1.
REPORT = textwrap.dedent("""
    import json, logging, sys
    from ansible_collections.ebpf.deploy.plugins.module_utils import _netlink
    out = {"how": _netlink.PYROUTE2_IMPORT, "has": _netlink.HAS_PYROUTE2,
           "error": str(_netlink.PYROUTE2_IMPORT_ERROR or ""),
           "init_ran": "pyroute2.ndb.main" in sys.modules}
    if _netlink.HAS_PYROUTE2:
        ipr = _netlink.IPRoute()
        try:
            out["ipr_lo"] = ipr.link("get", index=1)[0].get_attr("IFLA_IFNAME")
        finally:
            ipr.close()
        with _netlink.Netlink() as nl:
            iface = nl.interface("lo")
            out["nl_lo"] = [iface.name, iface.ifindex, nl.xdp_state(iface.ifindex).prog_id]
            try:
                nl.interface("ebpfd-none0")
            except _netlink.NoSuchInterface:
                out["missing"] = "NoSuchInterface"  # NetlinkError was recognised
        out["null_handler"] = any(isinstance(h, logging.NullHandler)
                                  for h in logging.getLogger("pyroute2").handlers)
        out["init_ran_after_use"] = "pyroute2.ndb.main" in sys.modules
        # code elsewhere in the process still gets the whole package
        from pyroute2 import NDB, IPRoute
        import pyroute2
        out["late"] = [NDB.__name__, IPRoute is _netlink.IPRoute, bool(pyroute2.__version__),
                       "pyroute2.ndb.main" in sys.modules]
    else:
        out["leftovers"] = sorted(name for name in sys.modules if name.split(".")[0] == "pyroute2")
    print(json.dumps(out))
""")


def run_case(prelude: str = "") -> dict:
    env = dict(os.environ, PYTHONPATH=str(COLLECTIONS), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(prelude) + REPORT], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_lean_path_skips_the_package_init_and_gives_a_working_iproute():
    out = run_case()
    assert out["how"] == "lean"
    assert out["init_ran"] is False and out["init_ran_after_use"] is False
    assert out["ipr_lo"] == "lo"
    assert out["nl_lo"] == ["lo", 1, None]
    assert out["missing"] == "NoSuchInterface"
    assert out["null_handler"] is True  # pyroute2's log records stay off stderr, as with the package
    assert out["late"] == ["NDB", True, True, True]  # the package completed itself on demand


def test_any_failure_of_the_lean_path_falls_back_to_the_package():
    out = run_case("""
        import importlib.util
        def broken(spec):
            raise RuntimeError("lean path broken on purpose")
        importlib.util.module_from_spec = broken
    """)
    assert out["how"] == "package"
    assert out["init_ran"] is True
    assert out["ipr_lo"] == "lo"
    assert out["nl_lo"] == ["lo", 1, None]
    assert out["missing"] == "NoSuchInterface"
    assert out["late"] == ["NDB", True, True, True]


def test_failure_inside_a_pyroute2_module_falls_back_to_the_package():
    # the lean path fails after some pyroute2 modules are loaded: they are forgotten, then re-imported
    out = run_case("""
        import importlib
        real = importlib.import_module
        def flaky(name, package=None):
            if name == "pyroute2.netns":
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


def test_missing_pyroute2_is_reported_not_raised():
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
    assert out == {"how": None, "has": False, "error": "No module named 'pyroute2'", "init_ran": False,
                   "leftovers": []}


def test_netlink_requires_pyroute2_when_it_is_missing(monkeypatch):
    from ansible_collections.ebpf.deploy.plugins.module_utils import _netlink

    monkeypatch.setattr(_netlink, "HAS_PYROUTE2", False)
    monkeypatch.setattr(_netlink, "PYROUTE2_IMPORT_ERROR", ImportError("No module named 'pyroute2'"))
    with pytest.raises(ImportError, match="pyroute2 is required"):
        _netlink.Netlink()
