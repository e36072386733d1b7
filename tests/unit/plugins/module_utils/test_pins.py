"""Pure pin layout and validation, and the version pointers on an ordinary directory."""
from __future__ import annotations

import json
import os

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput
from ansible_collections.ebpf.deploy.plugins.module_utils._pins import (
    Deployment,
    link_pin_name,
    list_tree,
    parse_link_pin_name,
    validate_deployment_name,
    validate_name,
    validate_root,
)

V1, V2, V3 = "aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"


@pytest.mark.parametrize("bad", ["", ".", "..", "../x", "a/b", "a.b", "a b", "ä", "x" * 201, None, 3])
def test_validate_name_refuses_names_that_could_leave_the_root(bad):
    with pytest.raises(InvalidInput):
        validate_name(bad)


@pytest.mark.parametrize("good", ["pktcount", "xdp_packet_counter", "a-b_C9"])
def test_validate_name_accepts_plain_names(good):
    assert validate_name(good) == good


@pytest.mark.parametrize("reserved", ["maps", "links", "current", "previous", "_staging-1", "0123456789ab"])
def test_deployment_names_that_collide_with_the_layout_are_reserved(reserved):
    with pytest.raises(InvalidInput, match="reserved"):
        validate_deployment_name(reserved)


@pytest.mark.parametrize("bad", ["relative/path", "/sys/fs/bpf/../etc", ""])
def test_validate_root(bad):
    with pytest.raises(InvalidInput):
        validate_root(bad)


def test_layout(tmp_path):
    dep = Deployment("/sys/fs/bpf/ebpf_deploy/", "pktcount", state_dir=tmp_path)
    assert str(dep.map_pin("pkt_count")) == "/sys/fs/bpf/ebpf_deploy/pktcount/maps/pkt_count"
    assert str(dep.program_pin("xdp_prog", V1)) == f"/sys/fs/bpf/ebpf_deploy/pktcount/{V1}/progs/xdp_prog"
    assert str(dep.link_pin("eth0")) == "/sys/fs/bpf/ebpf_deploy/pktcount/links/eth0:xdp"
    assert str(dep.link_pin("eth0", netns="lab1")) == "/sys/fs/bpf/ebpf_deploy/pktcount/links/lab1@eth0:xdp"
    assert dep.metadata_path(V1) == tmp_path / "pktcount" / "sys%2Ffs%2Fbpf%2Febpf_deploy" / f"{V1}.json"
    with pytest.raises(InvalidInput):
        dep.program_pin("../../etc", V1)
    with pytest.raises(InvalidInput):
        dep.program_pin("prog", "../x")
    with pytest.raises(InvalidInput, match="no current version"):
        dep.program_pin("prog")


@pytest.mark.parametrize("ifname,netns", [("eth0", None), ("eth0.100", None), ("veth@1", "lab.1"),
                                          ("a%b", "n:s")])
def test_link_pin_names_have_no_dot_and_round_trip(ifname, netns):
    name = link_pin_name(ifname, netns)
    assert "." not in name and "/" not in name
    assert parse_link_pin_name(name) == (netns, ifname, "xdp")


def test_link_pin_name_refuses_bad_interfaces():
    for bad in ("", "a/b", "x" * 16):
        with pytest.raises(InvalidInput):
            link_pin_name(bad)


def _pin_version(dep, version, *programs):
    progs = dep.progs_dir(version)
    progs.mkdir(parents=True)
    for program in programs:
        (progs / program).write_text("")


def test_current_and_previous_switch_with_symlinks(tmp_path):
    dep = Deployment(tmp_path / "bpffs", "demo", state_dir=tmp_path / "run")
    assert dep.current_version() is None and dep.versions() == []
    _pin_version(dep, V1, "p")
    _pin_version(dep, V2, "p")
    assert dep.set_current(V1) is None
    assert dep.set_current(V2) == V1
    assert os.readlink(dep.path / "current") == V2
    assert (dep.current_version(), dep.previous_version()) == (V2, V1)
    assert dep.versions() == [V1, V2]
    assert dep.pinned_programs(V2) == {"p": dep.progs_dir(V2) / "p"}
    assert not dep.staging_dirs()
    with pytest.raises(InvalidInput, match="is current"):
        dep.remove_version(V2)
    assert dep.remove_version(V1)
    assert dep.previous_version() is None and dep.versions() == [V2]
    assert not (dep.path / "previous").is_symlink()
    with pytest.raises(InvalidInput, match="not pinned"):
        dep.set_current(V3)


def test_versions_are_ordered_by_metadata_not_by_name(tmp_path):
    dep = Deployment(tmp_path / "bpffs", "demo", state_dir=tmp_path / "run")
    for version, stamp in ((V3, 1.0), (V1, 3.0), (V2, 2.0)):
        _pin_version(dep, version, "p")
        dep.write_metadata(version, {"deployed_at_epoch": stamp})
    assert dep.versions() == [V3, V2, V1]
    meta = json.loads(dep.metadata_path(V1).read_text())
    assert meta["bpffs_root"] == str(dep.root) and meta["deployment"] == "demo"


def test_metadata_of_another_root_is_ignored(tmp_path):
    one = Deployment(tmp_path / "a", "demo", state_dir=tmp_path / "run")
    other = Deployment(tmp_path / "b", "demo", state_dir=tmp_path / "run")
    one.write_metadata(V1, {"digest": "x"})
    assert one.read_metadata(V1)["digest"] == "x"
    assert other.read_metadata(V1) == {}


def test_pointer_file_fallback_is_not_trusted_alone(tmp_path, monkeypatch):
    dep = Deployment(tmp_path / "bpffs", "demo", state_dir=tmp_path / "run")
    monkeypatch.setattr(Deployment, "supports_symlinks", lambda self: False)
    _pin_version(dep, V1, "p")
    _pin_version(dep, V2, "p")
    dep.set_current(V1)
    dep.set_current(V2)
    assert not (dep.path / "current").exists()
    assert (dep.current_version(), dep.previous_version()) == (V2, V1)
    # the file says V2 but the bpffs no longer has it: not current
    import shutil
    shutil.rmtree(dep.path / V2)
    assert dep.current_version() is None


def test_remove_all(tmp_path):
    dep = Deployment(tmp_path / "bpffs", "demo", state_dir=tmp_path / "run")
    _pin_version(dep, V1, "p")
    dep.set_current(V1)
    staging = dep.new_staging_dir()
    assert dep.staging_dirs() == [staging]
    assert list_tree(dep.path)
    assert dep.remove_all() is True
    assert not dep.path.exists() and not dep.meta_dir.exists()
    assert dep.remove_all() is False


# --- a NUL byte in a path option (issue 16) --------------------------------------------------------
def test_a_nul_byte_in_a_path_is_refused_in_one_line():
    """The kernel reads a path up to its NUL: /sys/fs/bpf/ebpfd\\0x pinned at /sys/fs/bpf/ebpfd."""
    from ansible_collections.ebpf.deploy.plugins.module_utils import _libbpf
    from ansible_collections.ebpf.deploy.plugins.module_utils._map import Request as MapRequest
    from ansible_collections.ebpf.deploy.plugins.module_utils._program import Request
    with pytest.raises(InvalidInput, match=r"^bpffs_root '/sys/fs/bpf/a\\x00b' contains a NUL byte$"):
        validate_root("/sys/fs/bpf/a\0b")
    with pytest.raises(InvalidInput, match=r"^src '/tmp/x\\x00\.bpf\.o' contains a NUL byte$"):
        Request.from_params({"name": "ebpfd_x", "src": "/tmp/x\0.bpf.o", "remote_src": True})
    with pytest.raises(InvalidInput, match=r"^path '/sys/fs/bpf/m\\x00x' contains a NUL byte$"):
        MapRequest.from_params({"path": "/sys/fs/bpf/m\0x", "create": {"type": "array"}}).validate()
    with pytest.raises(InvalidInput, match="contains a NUL byte"):
        _libbpf.obj_pin(0, "/sys/fs/bpf/ebpfd\0x")


# --- a bpffs_root shared with other tools (issue 16) ----------------------------------------------
def test_a_deployment_is_marked_and_an_unmarked_one_of_the_old_layout_still_counts(tmp_path):
    from ansible_collections.ebpf.deploy.plugins.module_utils._pins import MARKER
    dep = Deployment(tmp_path / "bpffs", "demo", state_dir=tmp_path / "run")
    _pin_version(dep, V1, "p")
    (dep.path / "maps").mkdir()
    assert not dep.has_marker() and dep.is_ours()      # made before markers: the layout only
    dep.set_current(V1)
    assert dep.has_marker() and (dep.path / MARKER).is_dir()
    assert dep.remove_all() and not dep.path.exists()


@pytest.mark.parametrize("make", [
    lambda d: (d / "tc" / "globals").mkdir(parents=True),         # another tool's directory
    lambda d: (d / "cilium_calls").mkdir(parents=True),
    lambda d: os.symlink("/", d / "maps", target_is_directory=True) if d.mkdir(parents=True) is None else None,
])
def test_another_tools_directory_of_the_same_name_is_never_removed_nor_written(tmp_path, make):
    dep = Deployment(tmp_path / "bpffs", "demo", state_dir=tmp_path / "run")
    make(dep.path)
    before = list_tree(dep.path)
    for action in (dep.remove_all, dep.mark, dep.new_staging_dir, dep.check_ours):
        with pytest.raises(InvalidInput, match=r"was not made by ebpf\.deploy .*left alone"):
            action()
    assert list_tree(dep.path) == before


def test_a_symlink_in_place_of_the_deployment_directory_is_not_ours(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "bpffs").mkdir()
    os.symlink(elsewhere, tmp_path / "bpffs" / "demo")
    dep = Deployment(tmp_path / "bpffs", "demo", state_dir=tmp_path / "run")
    with pytest.raises(InvalidInput, match="is not a directory"):
        dep.remove_all()
    assert elsewhere.is_dir() and (tmp_path / "bpffs" / "demo").is_symlink()


def test_only_our_directories_are_scanned_for_programs_we_own(tmp_path):
    from ansible_collections.ebpf.deploy.plugins.module_utils._xdp import our_dirs
    root = tmp_path / "bpffs"
    ours = Deployment(root, "ours", state_dir=tmp_path / "run")
    _pin_version(ours, V1, "p")
    ours.set_current(V1)
    legacy = Deployment(root, "legacy", state_dir=tmp_path / "run")
    _pin_version(legacy, V1, "p")
    (root / "tc" / "globals").mkdir(parents=True)
    (root / "links").mkdir()
    (root / "a.b").mkdir()                      # not even a deployment name
    assert our_dirs(str(root)) == [str(root / n) for n in ("legacy", "links", "ours")]


# --- /run records keyed by root as well as name (issue 16) -----------------------------------------
def test_two_roots_one_deployment_name_keep_two_records(tmp_path, monkeypatch):
    """Same name, same object (so the same version) under two roots: the second run overwrote the
    first's metadata, and removing one deployment removed the other's records."""
    monkeypatch.setattr(Deployment, "supports_symlinks", lambda self: False)   # the pointer file too
    one = Deployment(tmp_path / "a", "demo", state_dir=tmp_path / "run")
    two = Deployment(tmp_path / "b", "demo", state_dir=tmp_path / "run")
    for dep, digest in ((one, "one"), (two, "two")):
        _pin_version(dep, V1, "p")
        dep.set_current(V1)
        dep.write_metadata(V1, dict(dep.read_metadata(V1), digest=digest))
    assert one.metadata_path(V1) != two.metadata_path(V1)
    from ansible_collections.ebpf.deploy.plugins.module_utils._pins import root_key
    assert root_key("/sys/fs/bpf/ebpf_deploy/") == "sys%2Ffs%2Fbpf%2Febpf_deploy"
    assert one.meta_dir == tmp_path / "run" / "demo" / root_key(tmp_path / "a")
    assert (one.read_metadata(V1)["digest"], two.read_metadata(V1)["digest"]) == ("one", "two")
    assert one.current_version() == V1 and two.current_version() == V1
    assert one.remove_all()
    assert one.read_metadata(V1) == {} and one.current_version() is None
    assert two.read_metadata(V1)["digest"] == "two" and two.current_version() == V1
    assert two.remove_all() and not (tmp_path / "run" / "demo").exists()


def test_records_of_the_layout_before_roots_are_read_and_removed(tmp_path):
    dep = Deployment(tmp_path / "a", "demo", state_dir=tmp_path / "run")
    other_root = {"bpffs_root": str(tmp_path / "b"), "digest": "theirs"}
    _pin_version(dep, V1, "p")
    legacy = tmp_path / "run" / "demo"
    legacy.mkdir(parents=True)
    (legacy / f"{V1}.json").write_text(json.dumps({"bpffs_root": str(dep.root), "digest": "old"}))
    (legacy / f"{V2}.json").write_text(json.dumps(other_root))
    assert dep.read_metadata(V1)["digest"] == "old"
    dep.remove_all()
    assert not (legacy / f"{V1}.json").exists()
    assert json.loads((legacy / f"{V2}.json").read_text()) == other_root, "another root's record went"
