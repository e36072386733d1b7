"""The host runtime (what the confirm watcher and the boot restore run) is installed only when it
is missing or outdated: a commit no longer imports and reads every module_utils file each time."""
from __future__ import annotations

import zipfile

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils import _watcher as watcher


def _no_sources():
    raise AssertionError("the runtime was installed again")


def test_the_runtime_is_installed_once_then_found_by_its_key(tmp_path, monkeypatch):
    launcher = watcher.ensure_runtime(str(tmp_path))
    key = watcher.runtime_key()
    assert key and (tmp_path / "lib" / "current" / "keys" / key).exists()
    assert (tmp_path / "lib" / "current" / "complete").exists()
    monkeypatch.setattr(watcher, "_sources", _no_sources)
    assert watcher.ensure_runtime(str(tmp_path)) == launcher


@pytest.mark.parametrize("outdated", ["another key", "no key", "launcher changed", "no launcher"])
def test_a_missing_or_outdated_runtime_is_installed_again(tmp_path, monkeypatch, outdated):
    launcher = watcher.ensure_runtime(str(tmp_path))
    key = watcher.runtime_key()
    if outdated == "another key":
        monkeypatch.setattr(watcher, "runtime_key", lambda: "0123456789abcdef")
    elif outdated == "no key":
        monkeypatch.setattr(watcher, "runtime_key", lambda: None)
    elif outdated == "launcher changed":
        launcher.write_text("#!/bin/false\n", encoding="utf-8")
    else:
        launcher.unlink()
    installs = []
    real = watcher.install_runtime
    monkeypatch.setattr(watcher, "install_runtime", lambda state_dir, key=None: installs.append(key) or real(
        state_dir, key=key))
    assert watcher.ensure_runtime(str(tmp_path)) == launcher
    assert len(installs) == 1
    assert launcher.read_text(encoding="utf-8") == watcher._LAUNCHER_SOURCE  # pylint: disable=protected-access
    assert (tmp_path / "lib" / "current" / "keys" / key).exists()


def test_the_key_follows_each_file_of_the_package_on_disk(tmp_path, monkeypatch):
    package = tmp_path / "module_utils"
    package.mkdir()
    (package / "_a.py").write_text("A = 1\n", encoding="utf-8")
    monkeypatch.setattr(watcher, "__file__", str(package / "_watcher.py"))
    first = watcher.runtime_key()
    (package / "_a.py").write_text("A = 22\n", encoding="utf-8")
    assert watcher.runtime_key() not in (None, first)


def test_in_a_module_zip_the_key_is_read_from_the_zip_directory(tmp_path, monkeypatch):
    """AnsiballZ runs module_utils from a zip: sizes and CRCs, the same for the same contents."""
    inner = "ansible_collections/ebpf/deploy/plugins/module_utils"

    def bundle(name: str, text: str) -> str:
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as out:
            out.writestr(f"{inner}/_a.py", text)
            out.writestr(f"{inner}/_watcher.py", "")
            out.writestr("ansible_collections/ebpf/deploy/plugins/modules/m.py", text + "#")
        return str(path)

    def key_of(archive: str):
        monkeypatch.setattr(watcher, "__file__", f"{archive}/{inner}/_watcher.py")
        monkeypatch.setattr(watcher, "__loader__", type("Loader", (), {"archive": archive})())
        return watcher.runtime_key()

    first = key_of(bundle("one.zip", "A = 1\n"))
    assert first is not None
    assert key_of(bundle("again.zip", "A = 1\n")) == first
    assert key_of(bundle("two.zip", "A = 2\n")) != first
