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
