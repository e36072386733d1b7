"""The host's bytecode cache of our module_utils (_bytecode), in fresh interpreters that import
from a zip laid out as AnsiballZ ships one: the real _bytecode.py beside a small module."""
from __future__ import annotations

import hashlib
import json
import marshal
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
PACKAGE = "ansible_collections/ebpf/deploy/plugins/module_utils"
PROBE_SOURCE = "VALUE = 'from source'\n\n\ndef where():\n    return where.__code__.co_filename\n"
IMPORT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.ebpf.deploy.plugins.module_utils import _bytecode  # noqa: F401
from ansible_collections.ebpf.deploy.plugins.module_utils import _probe
loader = _probe.__loader__
print(json.dumps({"value": _probe.VALUE, "loader": type(loader).__name__, "file": _probe.__file__,
                  "where": _probe.where() if hasattr(_probe, "where") else None,
                  "archive": getattr(loader, "archive", None), "source": loader.get_source(_probe.__name__)}))
"""


# how often _probe.py is compiled in one import of it (zipimport calls the builtin by name)
COMPILES = """
import builtins, json, sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.ebpf.deploy.plugins.module_utils import _bytecode  # noqa: F401
seen, real = [], builtins.compile
def counting(source, filename, *args, **kwargs):
    seen.append(str(filename))
    return real(source, filename, *args, **kwargs)
builtins.compile = counting
from ansible_collections.ebpf.deploy.plugins.module_utils import _probe
builtins.compile = real
print(json.dumps({"value": _probe.VALUE, "compiles": sum(name.endswith("_probe.py") for name in seen)}))
"""


def payload(where: Path, *, zipped: bool = True, probe: str | bytes = PROBE_SOURCE) -> Path:
    files = {f"{PACKAGE}/_bytecode.py": (REPO / "plugins/module_utils/_bytecode.py").read_text(),
             f"{PACKAGE}/_probe.py": probe}
    parts = PACKAGE.split("/")
    files.update({"/".join(parts[:n]) + "/__init__.py": "" for n in range(1, len(parts) + 1)})
    if not zipped:
        for name, text in files.items():
            (where / name).parent.mkdir(parents=True, exist_ok=True)
            (where / name).write_text(text)
        return where
    archive = where / "ansible_ebpfd_payload.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for name, text in files.items():
            bundle.writestr(name, text)
    return archive


def run(path: Path, cache: Path | str, *flags: str, script: str = IMPORT) -> dict:
    env = dict(os.environ, EBPF_DEPLOY_BYTECODE_CACHE=str(cache))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.run([sys.executable, "-s", *flags, "-c", script, str(path)], capture_output=True, text=True,
                          env=env, timeout=60, check=True)
    return json.loads(proc.stdout)


def entries(cache: Path) -> list[Path]:
    return sorted(cache.iterdir()) if cache.exists() else []


@pytest.fixture
def zipped(tmp_path):
    return payload(tmp_path), tmp_path / "cache" / "bytecode"


def test_a_zipped_file_is_compiled_once_then_served_from_the_cache(zipped):
    archive, cache = zipped
    first = run(archive, cache)
    assert (first["value"], first["loader"]) == ("from source", "CachedZipLoader")
    # zipimport's answers pass through: the host runtime copies sources, runtime_key reads archive
    assert (first["source"], first["archive"]) == (PROBE_SOURCE, str(archive))
    assert first["file"] == f"{archive}/{PACKAGE}/_probe.py"
    assert cache.stat().st_mode & 0o777 == 0o700
    (entry,) = entries(cache)   # _probe's (_bytecode itself is imported before the finder is there)
    assert entry.name.endswith("-" + hashlib.sha256(PROBE_SOURCE.encode()).hexdigest())
    # an entry under the source's key is what the next run executes: it is read, not compiled again
    entry.write_bytes(marshal.dumps(compile("VALUE = 'from the cache'", "probe", "exec")))
    assert run(archive, cache)["value"] == "from the cache"


def test_a_file_is_compiled_once_when_cached_and_never_when_served(zipped):
    """zipimport alone compiles a file twice per import (its find_spec compiles it to name it):
    with the cache the first import compiles it once, every later one not at all."""
    archive, cache = zipped
    assert run(archive, "", script=COMPILES) == {"value": "from source", "compiles": 2}   # cache off: zipimport alone
    assert run(archive, cache, script=COMPILES) == {"value": "from source", "compiles": 1}
    assert run(archive, cache, script=COMPILES) == {"value": "from source", "compiles": 0}


def test_a_served_entry_names_the_zip_it_is_served_for(zipped, tmp_path):
    """AnsiballZ unpacks every run's zip under a new temporary path: code compiled in one run and
    served in the next names the second zip in tracebacks, not the first (gone by then)."""
    archive, cache = zipped
    assert run(archive, cache)["where"] == f"{archive}/{PACKAGE}/_probe.py"
    moved = tmp_path / "next-run" / archive.name
    moved.parent.mkdir()
    archive.rename(moved)
    served = run(moved, cache)
    assert (served["loader"], len(entries(cache))) == ("CachedZipLoader", 1)
    assert served["where"] == f"{moved}/{PACKAGE}/_probe.py"


def test_a_damaged_entry_is_compiled_over(zipped):
    archive, cache = zipped
    run(archive, cache)
    (entry,) = entries(cache)
    entry.write_bytes(entry.read_bytes()[:7])
    assert run(archive, cache)["value"] == "from source"
    assert marshal.loads(entry.read_bytes()).co_filename.endswith("_probe.py")


def test_a_cache_others_may_write_is_not_used(zipped):
    archive, cache = zipped
    cache.mkdir(parents=True)
    cache.chmod(0o770)
    out = run(archive, cache)
    assert (out["value"], out["loader"]) == ("from source", "zipimporter")
    assert entries(cache) == []


def test_nothing_is_cached_when_python_writes_no_bytecode(zipped):
    archive, cache = zipped
    out = run(archive, cache, "-B")
    assert (out["value"], out["loader"]) == ("from source", "zipimporter")
    assert not cache.exists()


def test_files_on_disk_keep_python_s_own_import(tmp_path):
    cache, tree = tmp_path / "cache", tmp_path / "tree"
    tree.mkdir()
    out = run(payload(tree, zipped=False), cache)
    assert (out["value"], out["loader"]) == ("from source", "SourceFileLoader")
    assert not cache.exists()


def test_a_source_with_a_coding_line_is_served_as_python_reads_it(tmp_path):
    """The finder takes a file's bytes as compile() does: a latin-1 file with its coding line is
    served (a strict UTF-8 read would have refused it)."""
    archive = payload(tmp_path, probe="# -*- coding: latin-1 -*-\nVALUE = 'caf\xe9'\n".encode("latin-1"))
    cache = tmp_path / "cache" / "bytecode"
    for _run in (1, 2):
        out = run(archive, cache, script=COMPILES)
        assert out["value"] == "caf\xe9", out
    assert out["compiles"] == 0 and len(entries(cache)) == 1
