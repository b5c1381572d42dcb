"""The outbox file: pending updates survive a restart, a torn record loses only itself, the file is never deleted."""

from __future__ import annotations

import os

from edge.outbox import FILE_NAME, MAGIC, UpdateOutbox, outbox_record, parse_outbox


def test_appended_updates_load_back_in_a_new_outbox(tmp_path):
    UpdateOutbox(tmp_path / "dev").append(3, b"three")
    UpdateOutbox(tmp_path / "dev").append(4, b"")
    assert UpdateOutbox(tmp_path / "dev").load() == {3: b"three", 4: b""}


def test_acknowledging_the_last_update_truncates_the_same_file(tmp_path):
    outbox = UpdateOutbox(tmp_path / "dev")
    outbox.append(1, b"x" * 5000)
    inode = os.stat(outbox.path).st_ino
    outbox.replace({})
    assert os.stat(outbox.path).st_size == 0 and os.stat(outbox.path).st_ino == inode
    outbox.append(2, b"y")
    assert os.stat(outbox.path).st_ino == inode, "a new round must not allocate a new file"
    assert UpdateOutbox(tmp_path / "dev").load() == {2: b"y"}


def test_acknowledging_one_of_two_keeps_the_other(tmp_path):
    outbox = UpdateOutbox(tmp_path / "dev")
    outbox.append(5, b"five")
    outbox.append(6, b"six")
    outbox.replace({6: b"six"})
    assert UpdateOutbox(tmp_path / "dev").load() == {6: b"six"}
    assert sorted(p.name for p in (tmp_path / "dev").iterdir()) == [FILE_NAME]


def test_a_torn_last_record_is_dropped_and_the_earlier_kept(tmp_path, caplog):
    outbox = UpdateOutbox(tmp_path / "dev")
    outbox.append(7, b"seven")
    outbox.append(8, b"eight" * 100)
    outbox.path.write_bytes(outbox.path.read_bytes()[:-10])  # a crash in the middle of the second append
    assert UpdateOutbox(tmp_path / "dev").load() == {7: b"seven"}
    assert "round 8 record is torn" in caplog.text


def test_a_file_that_is_not_an_outbox_is_reported_not_read(tmp_path, caplog):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / FILE_NAME).write_bytes(b"something else entirely")
    assert UpdateOutbox(tmp_path / "dev").load() == {}
    assert "not a DMSKD outbox" in caplog.text


def test_a_torn_header_is_named(tmp_path):
    pending, problem = parse_outbox(MAGIC + outbox_record(1, b"a") + b"\x00\x00")
    assert pending == {1: b"a"} and "2 bytes of a header" in problem


def test_per_round_files_of_an_older_version_are_taken_in_and_removed(tmp_path):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "round-00004.safetensors").write_bytes(b"old four")
    (tmp_path / "dev" / "round-x.safetensors").write_bytes(b"not a round")
    assert UpdateOutbox(tmp_path / "dev").load() == {4: b"old four"}
    assert not (tmp_path / "dev" / "round-00004.safetensors").exists()
    assert UpdateOutbox(tmp_path / "dev").load() == {4: b"old four"}, "the migrated update must stay pending"
