"""The host record: atomic files, refusals of torn or foreign files, and the pure transitions."""
from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils import _record as record
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput

ROOT = "/sys/fs/bpf/ebpf_deploy"


@pytest.fixture
def rec(tmp_path):
    os.umask(0o022)
    return record.Record(str(tmp_path), ROOT, "fw")


def test_empty_record_reads_as_nothing_committed(rec):
    state = rec.state()
    assert state["committed"] is None and state["pending"] is None and not rec.exists()


def test_state_round_trip_is_atomic_and_private(rec, tmp_path):
    rec.write_state(record.committed(rec.state(), "aaaaaaaaaaaa", by="run"))
    assert rec.state()["committed"] == "aaaaaaaaaaaa"
    assert stat.S_IMODE(os.stat(rec.path).st_mode) == 0o700
    assert [p.name for p in rec.path.iterdir()] == ["state.json"], "a temporary file was left behind"
    assert (rec.root_dir / "root").read_text() == ROOT


def test_two_roots_never_share_a_record(tmp_path):
    one = record.Record(str(tmp_path), "/sys/fs/bpf/a", "fw")
    two = record.Record(str(tmp_path), "/sys/fs/bpf/b", "fw")
    assert one.path != two.path


@pytest.mark.parametrize("content, words", [
    ('{"format": "ebpf_deploy.rec', "is damaged"),
    ('{"format": "other/1", "kind": "state", "deployment": "fw"}', "not an ebpf.deploy state record"),
    ('{"format": "ebpf_deploy.record/1", "kind": "state", "deployment": "other"}', "belongs to deployment 'other'"),
])
def test_torn_or_foreign_state_is_refused_in_one_line(rec, content, words):
    rec.path.mkdir(parents=True)
    rec.state_path.write_text(content)
    with pytest.raises(InvalidInput) as err:
        rec.state()
    assert words in err.value.msg and "\n" not in err.value.msg


def test_a_symlinked_state_file_is_refused(rec, tmp_path):
    rec.path.mkdir(parents=True)
    (tmp_path / "elsewhere.json").write_text("{}")
    os.symlink(tmp_path / "elsewhere.json", rec.state_path)
    with pytest.raises(InvalidInput, match="cannot be read"):
        rec.state()


def test_stored_object_is_checked_before_use(rec):
    data = b"\x7fELF not really"
    import hashlib
    rec.store_version("bbbbbbbbbbbb", {"digest": hashlib.sha256(data).hexdigest()}, data)
    assert rec.version_object("bbbbbbbbbbbb") == data
    rec.object_path("bbbbbbbbbbbb").write_bytes(b"tampered")
    with pytest.raises(InvalidInput, match="is corrupt"):
        rec.version_object("bbbbbbbbbbbb")


def test_pending_over_pending_keeps_what_the_first_replaced():
    state = record.empty_state("fw", ROOT)
    first = record.pending_begin(state, version="v2v2v2v2v2v2", previous="v1v1v1v1v1v1", deadline=None, token="a")
    record.remember_holder(first["pending"], "eth0", {"prog_id": 10})
    record.remember_map_writes(first["pending"], "bl", "/pin", [{"key": "01", "old": None}])
    second = record.pending_begin(first, version="v3v3v3v3v3v3", previous="v2v2v2v2v2v2", deadline=5.0, token="b")
    record.remember_holder(second["pending"], "eth0", {"prog_id": 20})
    record.remember_map_writes(second["pending"], "bl", "/pin", [{"key": "01", "old": "ff"}])
    pending = second["pending"]
    assert pending["previous"] == "v1v1v1v1v1v1" and pending["replaced"]["attach"]["eth0"]["prog_id"] == 10
    assert pending["replaced"]["maps"]["bl"]["entries"] == [{"key": "01", "old": None}]


def test_previous_committed_never_goes_forward_and_a_second_rollback_stays():
    state = record.empty_state("fw", ROOT)
    for version in ("v1", "v2", "v3"):
        state = record.committed(state, version, by="run")
    assert record.previous_committed(state) == "v2"
    back = record.rolled_back(state, to="v2", failed="v3", by="controller")
    assert back["committed"] == "v2" and "v3" in back["rolled_back"]
    assert record.previous_committed(back) is None, "a second rollback must change nothing"
    again = record.committed(back, "v4", by="run")
    assert record.previous_committed(again) == "v2", "v3 was rolled back: never returned to"


def test_summary_shows_pending_and_time_left():
    state = record.pending_begin(record.empty_state("fw", ROOT), version="v2", previous=None, deadline=110.0,
                                 token="t")
    view = record.summary(state, now=100.0)
    assert view["pending"] == {"version": "v2", "deadline": 110.0, "seconds_left": 10.0, "watcher": None}
    assert json.dumps(view)
