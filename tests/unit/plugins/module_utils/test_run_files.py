"""Files under /run/ebpf_deploy (metadata, version pointers, locks): written where asked only.

/run is shared by every process of the host. A record is written to a unique temporary name made
in its own directory (mkstemp: O_EXCL, O_NOFOLLOW, mode 0600) and renamed into place; a record
or a lock that is a symlink is not followed; the directories are 0700 whatever the umask.
"""
from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils._errors import EbpfDeployError
from ansible_collections.ebpf.deploy.plugins.module_utils._lock import deployment_lock
from ansible_collections.ebpf.deploy.plugins.module_utils._pins import Deployment

V1 = "aaaaaaaaaaaa"


@pytest.fixture
def wide_umask():
    old = os.umask(0)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _pin_version(dep, version):
    dep.progs_dir(version).mkdir(parents=True)
    (dep.progs_dir(version) / "p").write_text("")


def test_record_directories_are_0700_whatever_the_umask(tmp_path, wide_umask):
    run = tmp_path / "run"
    dep = Deployment(tmp_path / "bpffs", "demo", state_dir=run)
    dep.write_metadata(V1, {"digest": "x"})
    for path in (run, run / "demo", dep.meta_dir):
        assert mode(path) == 0o700, (path, oct(mode(path)))
    assert mode(dep.metadata_path(V1)) == 0o600
    with deployment_lock("ebpfd_demo", 1, lock_dir=str(run / "locks")) as lock:
        assert mode(run / "locks") == 0o700 and mode(lock) == 0o600


def test_a_record_is_written_through_a_unique_temporary_name_never_through_a_symlink(tmp_path, monkeypatch):
    """The temporary name was predictable (.<name>.<pid>.tmp): a symlink planted there was followed."""
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    dep = Deployment(tmp_path / "bpffs", "demo", state_dir=tmp_path / "run")
    dep.meta_dir.mkdir(parents=True)
    path = dep.metadata_path(V1)
    os.symlink(victim, path.with_name(f".{path.name}.{os.getpid()}.tmp"))
    dep.write_metadata(V1, {"digest": "x"})
    assert victim.read_text() == "keep me\n"
    assert not path.is_symlink() and json.loads(path.read_text())["digest"] == "x"
    leftovers = [p.name for p in dep.meta_dir.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]
    assert leftovers == []

    monkeypatch.setattr(Deployment, "supports_symlinks", lambda self: False)
    _pin_version(dep, V1)
    pointer = dep.pointer_file
    os.symlink(victim, pointer.with_name(f".{pointer.name}.{os.getpid()}.tmp"))
    dep.set_current(V1)
    assert victim.read_text() == "keep me\n" and dep.current_version() == V1


def test_a_record_that_is_a_symlink_is_not_read(tmp_path):
    dep = Deployment(tmp_path / "bpffs", "demo", state_dir=tmp_path / "run")
    elsewhere = tmp_path / "planted.json"
    elsewhere.write_text(json.dumps({"bpffs_root": str(dep.root), "digest": "planted"}))
    dep.meta_dir.mkdir(parents=True)
    os.symlink(elsewhere, dep.metadata_path(V1))
    assert dep.read_metadata(V1) == {}


def test_a_lock_file_that_is_a_symlink_is_refused_in_one_line(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    locks = tmp_path / "locks"
    locks.mkdir()
    os.symlink(victim, locks / "ebpfd_demo.lock")
    with pytest.raises(EbpfDeployError) as err:
        with deployment_lock("ebpfd_demo", 1, lock_dir=str(locks)):
            pass
    assert "symlink" in err.value.msg and "\n" not in err.value.msg
    assert victim.read_text() == "keep me\n"
