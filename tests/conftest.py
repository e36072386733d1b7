"""Makes the collection importable as ansible_collections.ebpf.deploy for every test tier.

`make collection` links .build/collections/ansible_collections/ebpf/deploy to this checkout.
"""
import sys
from pathlib import Path

_COLLECTIONS = Path(__file__).resolve().parents[1] / ".build" / "collections"
if not (_COLLECTIONS / "ansible_collections" / "ebpf" / "deploy").exists():
    raise RuntimeError(f"{_COLLECTIONS} is missing the collection link: run `make collection`")
if str(_COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(_COLLECTIONS))

import shutil  # noqa: E402

import pytest  # noqa: E402

_STATE_DIR = Path("/run/ebpf_deploy")   # the modules' metadata, locks and notes on this host


def _test_state_entries() -> set:
    """Entries the tests' prefixed deployments and pin roots leave under /run/ebpf_deploy
    (lock files of standalone maps are named after a hash of their path, so all new locks count)."""
    found = set()
    for folder in (_STATE_DIR, _STATE_DIR / "xdp"):
        if folder.is_dir():
            found |= {entry for entry in folder.iterdir() if "ebpfd" in entry.name}
    if (_STATE_DIR / "locks").is_dir():
        found |= set((_STATE_DIR / "locks").iterdir())
    return found


@pytest.fixture(scope="session", autouse=True)
def _clean_module_state():
    """Remove the locks, metadata and XDP notes that this session's test deployments leave behind."""
    before = _test_state_entries()
    yield
    for entry in _test_state_entries() - before:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
