"""Session-wide set-up for every test tier.

`pytest.ini` puts `.build/collections` (the collection as ansible_collections.ebpf.deploy, linked
by `make collection`) and the repository root (`tests.*` helpers) on the import path.
"""
from pathlib import Path

import pytest

from tests import session_state

_COLLECTIONS = Path(__file__).resolve().parents[1] / ".build" / "collections"
if not (_COLLECTIONS / "ansible_collections" / "ebpf" / "deploy").exists():
    raise RuntimeError(f"{_COLLECTIONS} is missing the collection link: run `make collection`")


@pytest.fixture(scope="session", autouse=True)
def _clean_module_state():
    """Remove the locks, metadata and notes this session's deployments leave under /run/ebpf_deploy,
    and nothing of another session running beside it (tests/session_state.py)."""
    before = session_state.locks()
    yield
    session_state.clean(before)
