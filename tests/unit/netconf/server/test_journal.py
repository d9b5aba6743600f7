"""The datastore journal: round trip, torn tails, corruption, compaction at every crash point, kill -9."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import nvo3
from nvo3.netconf.server import journal as journal_module
from nvo3.netconf.server.journal import (
    FILE_HEADER,
    Contents,
    CorruptJournal,
    Journal,
    JournalError,
    Record,
    encode_record,
)

RECORDS = [Record("edit:merge", b"<config>one</config>"), Record("edit:replace", b"<config>two</config>"),
           Record("replace", b"<config>three</config>")]


def reopen(directory: Path) -> Contents:
    journal, contents = Journal.open(directory)
    journal.close()
    return contents


def write_store(directory: Path, records: list[Record]) -> list[int]:
    """A store holding `records`; returns the file offset at which each record starts."""
    journal, _ = Journal.open(directory)
    offsets = [FILE_HEADER.size]
    for record in records:
        journal.append(record.kind, record.payload)
        offsets.append(offsets[-1] + len(encode_record(record.kind, record.payload)))
    journal.close()
    return offsets[:-1]


def names(directory: Path) -> set[str]:
    return {path.name for path in directory.iterdir()}


# -- appending and reading -------------------------------------------------------------------

def test_an_empty_folder_is_an_empty_store(tmp_path: Path) -> None:
    assert reopen(tmp_path / "store") == Contents(None, [])
    assert names(tmp_path / "store") == {"running.0.journal", ".running.lock"}


def test_records_come_back_in_order(tmp_path: Path) -> None:
    write_store(tmp_path, RECORDS)
    assert reopen(tmp_path) == Contents(None, RECORDS)
    journal, _ = Journal.open(tmp_path)
    journal.append("edit:merge", b"four")
    journal.close()
    assert reopen(tmp_path).records == [*RECORDS, Record("edit:merge", b"four")]


def test_a_second_open_of_the_same_store_is_refused(tmp_path: Path) -> None:
    journal, _ = Journal.open(tmp_path)
    try:
        with pytest.raises(JournalError, match="already open"):
            Journal.open(tmp_path)
    finally:
        journal.close()


def test_two_stores_share_a_folder(tmp_path: Path) -> None:
    running, _ = Journal.open(tmp_path)
    startup, _ = Journal.open(tmp_path, name="startup")
    running.append("edit:merge", b"r")
    startup.append("replace", b"s")
    startup.compact(b"<config>s</config>")
    running.close()
    startup.close()
    assert reopen(tmp_path) == Contents(None, [Record("edit:merge", b"r")])
    startup, contents = Journal.open(tmp_path, name="startup")
    startup.close()
    assert contents == Contents(b"<config>s</config>", [])


def test_record_kinds_are_checked(tmp_path: Path) -> None:
    journal, _ = Journal.open(tmp_path)
    with pytest.raises(ValueError):
        journal.append("", b"x")
    with pytest.raises(ValueError):
        journal.append("k" * 256, b"x")
    journal.close()


def test_the_old_running_xml_is_the_base_until_a_compaction_replaces_it(tmp_path: Path) -> None:
    (tmp_path / "running.xml").write_bytes(b"<config>old</config>")
    journal, contents = Journal.open(tmp_path)
    assert contents == Contents(b"<config>old</config>", [])
    journal.append("edit:merge", b"<config>new</config>")
    journal.close()
    assert (tmp_path / "running.xml").read_bytes() == b"<config>old</config>"
    journal, contents = Journal.open(tmp_path)
    assert contents == Contents(b"<config>old</config>", [Record("edit:merge", b"<config>new</config>")])
    journal.compact(b"<config>old new</config>")
    journal.close()
    assert names(tmp_path) == {"running.1.xml", "running.1.journal", ".running.lock"}
    assert reopen(tmp_path) == Contents(b"<config>old new</config>", [])


# -- torn tails and corruption ---------------------------------------------------------------

def test_a_torn_tail_of_any_length_is_dropped_and_the_journal_goes_on(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    offsets = write_store(reference, RECORDS)
    whole = (reference / "running.0.journal").read_bytes()
    last = offsets[-1]
    for cut in range(last, len(whole)):
        store = tmp_path / f"cut{cut}"
        store.mkdir()
        (store / "running.0.journal").write_bytes(whole[:cut])
        journal, contents = Journal.open(store)
        assert contents.records == RECORDS[:-1], cut
        assert (store / "running.0.journal").stat().st_size == last
        journal.append("edit:merge", b"after")
        journal.close()
        assert reopen(store).records == [*RECORDS[:-1], Record("edit:merge", b"after")]


def test_zeros_after_the_last_record_are_a_torn_tail(tmp_path: Path) -> None:
    write_store(tmp_path, RECORDS)
    with (tmp_path / "running.0.journal").open("ab") as f:
        f.write(bytes(4096))                       # a size extended without its data (power loss)
    assert reopen(tmp_path).records == RECORDS


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x41
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_the_last_record_drops_that_record(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    offsets = write_store(reference, RECORDS)
    whole = (reference / "running.0.journal").read_bytes()
    for position in range(offsets[-1], len(whole)):
        store = tmp_path / f"flip{position}"
        store.mkdir()
        (store / "running.0.journal").write_bytes(whole)
        flip(store / "running.0.journal", position)
        journal, contents = Journal.open(store)
        assert contents.records == RECORDS[:-1], position
        journal.append("edit:merge", b"after")
        journal.close()
        assert reopen(store).records == [*RECORDS[:-1], Record("edit:merge", b"after")]


def test_a_flipped_byte_in_a_middle_record_refuses_to_load(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    offsets = write_store(reference, RECORDS)
    whole = (reference / "running.0.journal").read_bytes()
    for position in range(offsets[1], offsets[2]):
        store = tmp_path / f"flip{position}"
        store.mkdir()
        journal_file = store / "running.0.journal"
        journal_file.write_bytes(whole)
        flip(journal_file, position)
        damaged = journal_file.read_bytes()
        where = rf"running\.0\.journal: damaged record at offset {offsets[1]}"
        with pytest.raises(CorruptJournal, match=where):
            Journal.open(store)
        assert journal_file.read_bytes() == damaged          # nothing dropped


def test_a_damaged_file_header_refuses_to_load(tmp_path: Path) -> None:
    write_store(tmp_path, RECORDS)
    flip(tmp_path / "running.0.journal", 3)
    with pytest.raises(CorruptJournal, match="bad file header"):
        Journal.open(tmp_path)


def failing_base_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every base write fail (as on a full disk), journal files still being written."""
    real = journal_module.write_atomically

    def write(path: Path, content: bytes, mode: int = 0o600) -> None:
        if path.suffix == ".xml":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, content, mode)

    monkeypatch.setattr(journal_module, "write_atomically", write)


def test_a_failed_compaction_leaves_a_store_that_loads_the_same(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    write_store(tmp_path, RECORDS[:2])
    journal, _ = Journal.open(tmp_path)
    failing_base_writes(monkeypatch)
    with pytest.raises(JournalError, match="compaction failed"):
        journal.compact(b"<config>one two</config>")
    journal.append(RECORDS[2].kind, RECORDS[2].payload)
    journal.close()
    assert names(tmp_path) == {"running.0.journal", "running.1.journal", ".running.lock"}
    assert reopen(tmp_path) == Contents(None, RECORDS)
    monkeypatch.undo()
    journal, _ = Journal.open(tmp_path)
    journal.compact(b"<config>one two three</config>")
    journal.close()
    assert names(tmp_path) == {"running.2.xml", "running.2.journal", ".running.lock"}
    assert reopen(tmp_path) == Contents(b"<config>one two three</config>", [])


def test_damage_at_the_end_of_a_journal_that_a_later_one_follows_refuses_to_load(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_store(tmp_path, RECORDS)
    journal, _ = Journal.open(tmp_path)
    failing_base_writes(monkeypatch)
    with pytest.raises(JournalError):
        journal.compact(b"<config>all</config>")
    journal.close()
    older = tmp_path / "running.0.journal"
    older.write_bytes(older.read_bytes()[:-1])
    with pytest.raises(CorruptJournal, match="in a journal that a later one follows"):
        Journal.open(tmp_path)


def test_a_missing_journal_generation_refuses_to_load(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    write_store(tmp_path, RECORDS)
    journal, _ = Journal.open(tmp_path)
    failing_base_writes(monkeypatch)
    with pytest.raises(JournalError):
        journal.compact(b"<config>all</config>")
    journal.close()
    (tmp_path / "running.0.journal").unlink()
    with pytest.raises(CorruptJournal, match=r"journal generations \[0\] are missing"):
        Journal.open(tmp_path)


def test_a_failed_write_is_cut_back_so_later_appends_follow_no_garbage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal, _ = Journal.open(tmp_path)
    journal.append("edit:merge", b"one")
    real_write = os.write

    def half_write(fd: int, data: bytes) -> int:
        real_write(fd, data[:len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_write)
    with pytest.raises(OSError):
        journal.append("edit:merge", b"two, half written")
    monkeypatch.undo()
    journal.append("edit:merge", b"three")
    journal.close()
    assert reopen(tmp_path).records == [Record("edit:merge", b"one"), Record("edit:merge", b"three")]


def test_after_a_failed_fsync_the_journal_refuses_appends(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    journal, _ = Journal.open(tmp_path)

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        journal.append("edit:merge", b"one")
    monkeypatch.undo()
    with pytest.raises(JournalError, match="fsync failed"):
        journal.append("edit:merge", b"two")
    journal.close()


# -- compaction ------------------------------------------------------------------------------

def test_compaction_starts_a_new_generation_and_removes_the_old_one(tmp_path: Path) -> None:
    write_store(tmp_path, RECORDS)
    journal, _ = Journal.open(tmp_path)
    journal.compact(b"<config>all three</config>")
    assert (journal.generation, journal.base_generation) == (1, 1)
    journal.append("edit:merge", b"four")
    journal.close()
    assert names(tmp_path) == {"running.1.xml", "running.1.journal", ".running.lock"}
    assert reopen(tmp_path) == Contents(b"<config>all three</config>", [Record("edit:merge", b"four")])


def test_compaction_is_due_when_the_journal_outgrows_its_base(tmp_path: Path) -> None:
    journal, _ = Journal.open(tmp_path, min_compaction_bytes=150)
    record = b"x" * 40
    journal.append("edit", record)
    journal.append("edit", record)
    assert not journal.compaction_due()                      # 2 * 55 bytes, floor 150: due next
    journal.append("edit", record)
    assert journal.compaction_due()
    journal.compact(b"b" * 300)
    assert not journal.compaction_due()
    for _ in range(5):
        journal.append("edit", record)
    assert journal.journal_bytes() == 5 * 55
    assert not journal.compaction_due()                      # 275 bytes, base 300
    journal.append("edit", record)
    assert journal.compaction_due()
    journal.close()


def test_appends_go_on_while_the_base_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_store(tmp_path, RECORDS[:1])
    journal, _ = Journal.open(tmp_path)
    real = journal_module.write_atomically
    writing, release = threading.Event(), threading.Event()

    def slow_base(path: Path, content: bytes, mode: int = 0o600) -> None:
        if path.suffix == ".xml":
            writing.set()
            assert release.wait(10)
        real(path, content, mode)

    monkeypatch.setattr(journal_module, "write_atomically", slow_base)
    journal.start_compaction(b"<config>one</config>")
    assert writing.wait(10)
    assert not journal.compaction_due()                      # one at a time
    journal.append(RECORDS[1].kind, RECORDS[1].payload)      # returns while the base is being written
    journal.append(RECORDS[2].kind, RECORDS[2].payload)
    release.set()
    journal.wait_compaction()
    journal.close()
    assert reopen(tmp_path) == Contents(b"<config>one</config>", RECORDS[1:])


class SimulatedCrash(OSError):
    """Every file system change from the crash point on fails: the process is gone."""


#: The os functions by which the journal and fsutil change files.
MUTATIONS = ("open", "write", "fsync", "rename", "replace", "unlink", "ftruncate", "fchmod")


@pytest.fixture
def crash_after(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int | None], list[str]]]:
    """crash_after(n): let n file system changes happen, fail every later one; returns the log."""
    performed: list[str] = []
    limit: list[int | None] = [None]
    real = {name: getattr(os, name) for name in MUTATIONS}

    def wrap(name: str, real: Callable[..., object]) -> Callable[..., object]:
        def change(*args: object, **kwargs: object) -> object:
            if limit[0] is not None and len(performed) >= limit[0]:
                raise SimulatedCrash(errno.EIO, f"crashed before {name}")
            performed.append(f"{name}{args[:1]}")
            return real(*args, **kwargs)
        return change

    def arm(n: int | None) -> list[str]:
        performed.clear()
        limit[0] = n
        for name in MUTATIONS:
            monkeypatch.setattr(os, name, wrap(name, real[name]))
        return performed

    yield arm
    monkeypatch.undo()


def prepare_store(directory: Path) -> Journal:
    """A store with a legacy base, an earlier compaction and records after it."""
    directory.mkdir()
    (directory / "running.xml").write_bytes(b"<config>legacy</config>")
    journal, _ = Journal.open(directory)
    journal.append(RECORDS[0].kind, RECORDS[0].payload)
    journal.compact(b"<config>legacy one</config>")
    for record in RECORDS[1:]:
        journal.append(record.kind, record.payload)
    return journal


def test_compaction_crashing_at_any_step_loads_as_before_or_after(
        tmp_path: Path, crash_after: Callable[[int | None], list[str]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    before = Contents(b"<config>legacy one</config>", RECORDS[1:])
    after = Contents(b"<config>everything</config>", [])
    journal = prepare_store(tmp_path / "complete")
    performed = crash_after(None)
    journal.compact(after.base or b"")
    steps = list(performed)                                  # the log of one whole compaction
    monkeypatch.undo()
    journal.close()
    assert any(step.startswith("rename") for step in steps)
    assert any(step.startswith("unlink") for step in steps)
    seen = []
    for crash_point in range(len(steps) + 1):
        journal = prepare_store(tmp_path / f"crash{crash_point}")
        crash_after(crash_point)
        try:
            journal.compact(after.base or b"")
        except OSError:                                      # SimulatedCrash, or JournalError wrapping it
            pass
        except JournalError:
            pass
        monkeypatch.undo()
        journal.close()
        journal, contents = Journal.open(tmp_path / f"crash{crash_point}")
        assert contents in (before, after), (crash_point, steps[crash_point:crash_point + 1], contents)
        seen.append(contents == after)
        journal.append("edit:merge", b"later")
        journal.close()
        assert reopen(tmp_path / f"crash{crash_point}").records == [*contents.records,
                                                                     Record("edit:merge", b"later")]
    assert seen[0] is False and seen[-1] is True
    print(f"{len(steps)} crash points: {steps}; after from point {seen.index(True)}")


# -- a real crash -----------------------------------------------------------------------------

#: The child: appends numbered records as fast as it can, printing each number once acknowledged,
#: and compacts every 25 records (base: the last number, then 1 MB of padding).
WRITER = """
import sys
from pathlib import Path
from nvo3.netconf.server.journal import Journal

journal, contents = Journal.open(Path(sys.argv[1]))
last = int(contents.base.split(b"\\n", 1)[0]) if contents.base else 0
for record in contents.records:
    last += 1
    assert int(record.payload.split(b"\\n", 1)[0]) == last
while True:
    last += 1
    journal.append("edit", b"%d\\n" % last + b"r" * 190)
    sys.stdout.write(f"{last}\\n")
    sys.stdout.flush()
    if last % 25 == 0:
        journal.start_compaction(b"%d\\n" % last + b"b" * 1_000_000)
"""


def compaction_in_flight(directory: Path) -> bool:
    """A journal newer than the newest base: killed between rotation and the base's rename."""
    bases, journals, _ = journal_module._Files(directory, "running", ".xml").scan()
    return bool(journals) and max(journals) > max(bases, default=0)


def recovered_numbers(directory: Path) -> tuple[int, int]:
    """(number in the base, last number), checking that the records count up from the base."""
    journal, contents = Journal.open(directory)
    journal.close()
    base_number = 0
    if contents.base is not None:
        head, padding = contents.base.split(b"\n", 1)
        assert padding == b"b" * 1_000_000
        base_number = int(head)
    numbers = range(base_number + 1, base_number + 1 + len(contents.records))
    expected = [b"%d\n" % n + b"r" * 190 for n in numbers]
    assert [record.payload for record in contents.records] == expected
    return base_number, base_number + len(contents.records)


def test_kill_9_loses_no_acknowledged_record(tmp_path: Path) -> None:
    store = tmp_path / "store"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    root = str(Path(nvo3.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    rng = random.Random(12)
    last = 0
    killed_during_compaction = 0
    for round_number in range(10):
        acks = tmp_path / f"acks{round_number}"
        with acks.open("wb") as out:
            child = subprocess.Popen([sys.executable, str(script), str(store)], stdout=out, env=env)
        try:
            deadline = time.monotonic() + 10
            while acks.stat().st_size < 200 and time.monotonic() < deadline:   # started and appending
                assert child.poll() is None, f"writer exited with {child.returncode}"
                time.sleep(0.005)
            if round_number % 2:
                time.sleep(rng.uniform(0, 0.3))
            else:                                            # aim at a compaction
                time.sleep(rng.uniform(0, 0.1))
                while not compaction_in_flight(store) and time.monotonic() < deadline:
                    pass
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
        killed_during_compaction += compaction_in_flight(store)
        acknowledged = [int(line) for line in acks.read_text().splitlines()]
        assert acknowledged == list(range(last + 1, last + 1 + len(acknowledged)))
        base_number, last = recovered_numbers(store)
        assert acknowledged[-1] <= last <= acknowledged[-1] + 1, (acknowledged[-1], base_number, last)
    print(f"last record {last}, {killed_during_compaction} of 10 kills during a compaction")
    assert killed_during_compaction >= 1
