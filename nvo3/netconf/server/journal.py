"""A crash-safe journal of configuration changes beside a base snapshot: an edit costs an append.

The journal stores opaque bytes. The engine appends one record per acknowledged change (an
edit-config's `<config>` and its default-operation, or a whole replacement configuration) and
replies only after `append` has returned, i.e. after the record is written and fsynced. From time
to time it hands over a printed snapshot of the whole configuration; the journal makes that the
new base and starts over with an empty journal ("compaction").

Files, for a store called `running` in `directory`::

    running.<g>.xml       base of generation g: the configuration before the first record of
                          journal g (written whole: temporary file, fsync, rename, fsync folder)
    running.<g>.journal   records of generation g: a file header, then records
    running.xml           the single file of installations before the journal; read as the
                          base of generation 0 when no running.<g>.xml exists
    .running.lock         flock'ed while the store is open: one writer

Record: ``b"NJ" | kind length (1 byte) | payload length (4) | CRC32 (4) | kind | payload``, big
endian; the CRC (zlib.crc32) covers the two lengths, the kind and the payload. Each record is one
`write` followed by `fsync`.

Recovery (`Journal.open`): B = the highest generation that has a base (0 if none: the legacy
`running.xml` or nothing). The configuration is base B, then the records of journals B, B+1, ...
in order; they must be consecutive. Files older than B are left-overs of a finished compaction and
are removed. A bad record (short header, short payload, bad magic or CRC) after which no valid
record follows is the torn tail of an append that a crash interrupted: it is logged with its
offset and truncated away, never returned. A bad record with a valid record after it is
corruption of acknowledged data: `CorruptJournal`, naming the file and offset; nothing is dropped.

Compaction protocol. The caller, holding the lock that orders its appends, prints the snapshot
S = base + every record appended so far and calls `start_compaction(S)`:

1. rotate (in the caller's thread, under the journal's lock): create journal g+1 with its header
   (whole: temporary file, fsync, rename, fsync folder) and send all later appends to it;
2. in a background thread: write base g+1 = S (temporary file, fsync, rename, fsync folder);
3. then remove journals and bases older than g+1 and the legacy file, and fsync the folder.

A crash before step 2's rename is durable leaves base g + journal g + journal g+1 (the records
made during the compaction): recovery replays both journals, the same configuration. A crash
after it leaves base g+1 + journal g+1 (plus left-overs that recovery removes): base g+1 already
holds journal g, which is never replayed again. No instant mixes the two, so no record is lost or
applied twice. A failed compaction (disk full) leaves the older files in place; the next one
starts from them. Appends are never blocked by the base write, only by the rotation (one small
file). `compaction_due` says when to compact: when the journal has outgrown its base (or a floor),
so each compaction's cost is paid for by as many bytes of appends, O(1) amortised per append.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

from nvo3.common.files import write_atomically

log = logging.getLogger(__name__)

#: Start of every journal file, followed by its generation (8 bytes, big endian).
FILE_MAGIC = b"nvo3-journal 1\n"
FILE_HEADER = struct.Struct(">15sQ")
#: Start of every record; then kind length, payload length, CRC32.
RECORD_MAGIC = b"NJ"
RECORD_HEADER = struct.Struct(">2sBII")
#: Default journal size below which no compaction is due, however small the base.
MIN_COMPACTION_BYTES = 256 * 1024


class JournalError(Exception):
    """The journal cannot be opened or written."""


class CorruptJournal(JournalError):
    """A record before the end of a journal is damaged: acknowledged changes would be lost."""


@dataclass(frozen=True)
class Record:
    """One change as the caller appended it."""

    kind: str
    payload: bytes


@dataclass(frozen=True)
class Contents:
    """What a store holds on disk: its base snapshot (None if it has none) and the records after it."""

    base: bytes | None
    records: list[Record]


def encode_record(kind: str, payload: bytes) -> bytes:
    """A record as it is written: header, kind, payload."""
    kind_bytes = kind.encode()
    if not 0 < len(kind_bytes) < 256:
        raise ValueError(f"record kind must be 1 to 255 bytes long: {kind!r}")
    fields = struct.pack(">BI", len(kind_bytes), len(payload))
    crc = zlib.crc32(payload, zlib.crc32(kind_bytes, zlib.crc32(fields)))
    return RECORD_HEADER.pack(RECORD_MAGIC, len(kind_bytes), len(payload), crc) + kind_bytes + payload


def decode_record(data: bytes, offset: int) -> tuple[Record, int] | str:
    """The record at `offset` and the offset after it, or why there is no valid record there."""
    if len(data) - offset < RECORD_HEADER.size:
        return "short header"
    magic, kind_length, length, crc = RECORD_HEADER.unpack_from(data, offset)
    if magic != RECORD_MAGIC:
        return "bad record magic"
    start = offset + RECORD_HEADER.size
    end = start + kind_length + length
    if end > len(data):
        return "short payload"
    kind_bytes = data[start:start + kind_length]
    payload = data[start + kind_length:end]
    fields = data[offset + 2:offset + 7]
    if zlib.crc32(payload, zlib.crc32(kind_bytes, zlib.crc32(fields))) != crc:
        return "bad CRC"
    if kind_length == 0:
        return "bad kind"
    try:
        kind = kind_bytes.decode()
    except UnicodeDecodeError:
        return "bad kind"
    return Record(kind, payload), end


def _valid_record_after(data: bytes, offset: int) -> int | None:
    """The offset of the first valid record that starts after `offset`, if any."""
    position = data.find(RECORD_MAGIC, offset + 1)
    while position != -1:
        if not isinstance(decode_record(data, position), str):
            return position
        position = data.find(RECORD_MAGIC, position + 1)
    return None


@dataclass(frozen=True)
class _Parsed:
    records: list[Record]
    end: int                      # offset after the last valid record
    tail_error: str | None        # why the bytes after `end` are not a record (torn tail)


def _parse_journal(data: bytes, path: Path, generation: int) -> _Parsed:
    """The records of one journal file; raises CorruptJournal for damage before its end."""
    if len(data) < FILE_HEADER.size:
        raise CorruptJournal(f"{path}: short file header ({len(data)} bytes)")
    magic, file_generation = FILE_HEADER.unpack_from(data)
    if magic != FILE_MAGIC or file_generation != generation:
        raise CorruptJournal(f"{path}: bad file header (generation {file_generation}, expected {generation})")
    records: list[Record] = []
    offset = FILE_HEADER.size
    while offset < len(data):
        decoded = decode_record(data, offset)
        if isinstance(decoded, str):
            later = _valid_record_after(data, offset)
            if later is not None:
                raise CorruptJournal(f"{path}: damaged record at offset {offset} ({decoded}) "
                                     f"before a valid record at offset {later}")
            return _Parsed(records, offset, decoded)
        record, offset = decoded
        records.append(record)
    return _Parsed(records, offset, None)


class _Files:
    """The names of one store's files in its folder."""

    def __init__(self, directory: Path, name: str, suffix: str):
        self.directory = directory
        self.legacy = directory / f"{name}{suffix}"
        self.name = name
        self._suffix = suffix
        self._base = re.compile(rf"{re.escape(name)}\.(\d+){re.escape(suffix)}")
        self._journal = re.compile(rf"{re.escape(name)}\.(\d+)\.journal")
        self._temporary = re.compile(rf"\.{re.escape(name)}\.\d+(?:{re.escape(suffix)}|\.journal)\..+")

    def base(self, generation: int) -> Path:
        return self.directory / f"{self.name}.{generation}{self._suffix}"

    def journal(self, generation: int) -> Path:
        return self.directory / f"{self.name}.{generation}.journal"

    def scan(self) -> tuple[dict[int, Path], dict[int, Path], list[Path]]:
        """Bases and journals by generation, and temporary files a crash left behind."""
        bases: dict[int, Path] = {}
        journals: dict[int, Path] = {}
        temporary: list[Path] = []
        for path in self.directory.iterdir():
            if match := self._base.fullmatch(path.name):
                bases[int(match[1])] = path
            elif match := self._journal.fullmatch(path.name):
                journals[int(match[1])] = path
            elif self._temporary.fullmatch(path.name):
                temporary.append(path)
        return bases, journals, temporary


class Journal:
    """The base snapshot and journal of one store, open for appending; see the module notes.

    Made by `Journal.open`. `append` and `start_compaction` are called from one thread at a time
    (the caller's lock orders them); the compaction's background part runs beside appends.
    """

    def __init__(self, files: _Files, dir_fd: int, lock_fd: int, generation: int, base_generation: int,
                 base_size: int, journal_sizes: dict[int, int], min_compaction_bytes: int):
        self._files = files
        self._dir_fd = dir_fd
        self._lock_fd = lock_fd                   # holds the store's flock while open
        self._generation = generation
        self._base_generation = base_generation
        self._base_size = base_size
        self._journal_sizes = journal_sizes       # record bytes of each journal not yet in a base
        self._min_compaction_bytes = min_compaction_bytes
        self._fd = os.open(files.journal(generation), os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._lock = threading.Lock()
        self._broken: str | None = None
        self._compaction: threading.Thread | None = None
        self._compaction_error: BaseException | None = None

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(cls, directory: Path, name: str = "running", suffix: str = ".xml",
             min_compaction_bytes: int = MIN_COMPACTION_BYTES) -> tuple[Journal, Contents]:
        """Recover the store `name` in `directory` (see the module notes) and open it for appending.

        Returns the journal and what the store holds. Raises CorruptJournal if acknowledged
        records are damaged, JournalError if the store is open already (`.<name>.lock`, flock).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = _Files(directory, name, suffix)
        lock_fd = os.open(directory / f".{name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        dir_fd = -1
        try:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise JournalError(f"{directory}: the store {name!r} is already open") from None
            dir_fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
            journal, contents = cls._recover(files, dir_fd, lock_fd, min_compaction_bytes)
        except BaseException:
            os.close(lock_fd)
            if dir_fd >= 0:
                os.close(dir_fd)
            raise
        return journal, contents

    @classmethod
    def _recover(cls, files: _Files, dir_fd: int, lock_fd: int,
                 min_compaction_bytes: int) -> tuple[Journal, Contents]:
        bases, journals, temporary = files.scan()
        if bases:
            base_generation = max(bases)
            base: bytes | None = bases[base_generation].read_bytes()
        else:
            base_generation = 0
            base = files.legacy.read_bytes() if files.legacy.exists() else None
        wanted = sorted(g for g in journals if g >= base_generation)
        if wanted and wanted != list(range(base_generation, wanted[-1] + 1)):
            missing = sorted(set(range(base_generation, wanted[-1] + 1)) - set(wanted))
            raise CorruptJournal(f"{files.directory}: journal generations {missing} are missing "
                                 f"(base generation {base_generation}, journals {wanted})")
        records: list[Record] = []
        sizes: dict[int, int] = {}
        for generation in wanted:
            path = journals[generation]
            data = path.read_bytes()
            parsed = _parse_journal(data, path, generation)
            if parsed.tail_error is not None:
                if generation != wanted[-1]:
                    raise CorruptJournal(f"{path}: damaged record at offset {parsed.end} "
                                         f"({parsed.tail_error}) in a journal that a later one follows")
                cls._truncate_torn_tail(path, parsed, len(data))
            records.extend(parsed.records)
            sizes[generation] = parsed.end - FILE_HEADER.size
        obsolete = [p for g, p in bases.items() if g < base_generation]
        obsolete += [p for g, p in journals.items() if g < base_generation]
        if bases and files.legacy.exists():
            obsolete.append(files.legacy)
        _remove(obsolete + temporary, dir_fd)
        generation = wanted[-1] if wanted else base_generation
        if not wanted:
            write_atomically(files.journal(generation), FILE_HEADER.pack(FILE_MAGIC, generation))
            sizes[generation] = 0
        base_size = len(base) if base is not None else 0
        journal = cls(files, dir_fd, lock_fd, generation, base_generation, base_size, sizes,
                      min_compaction_bytes)
        log.info("%s: base generation %d (%d bytes), %d records in journals %s",
                 files.directory / files.name, base_generation, base_size, len(records),
                 wanted or [generation])
        return journal, Contents(base, records)

    @staticmethod
    def _truncate_torn_tail(path: Path, parsed: _Parsed, size: int) -> None:
        log.warning("%s: dropping a torn tail at offset %d (%s, %d bytes): an append a crash "
                    "interrupted, never acknowledged", path, parsed.end, parsed.tail_error,
                    size - parsed.end)
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, parsed.end)
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- appending ----------------------------------------------------------------------------

    def append(self, kind: str, payload: bytes) -> None:
        """Write one record and fsync it: when this returns, the record survives a crash.

        `kind` is the caller's name for the record (1 to 255 bytes of UTF-8). If the write
        fails, the journal is cut back to before it (nothing half is left) and the error raised;
        after a failed fsync the journal refuses further appends (the page cache can no longer
        be trusted), so the store must be reopened.
        """
        record = encode_record(kind, payload)
        with self._lock:
            if self._broken is not None:
                raise JournalError(f"{self._files.journal(self._generation)}: {self._broken}")
            size = self._journal_sizes[self._generation]
            try:
                written = os.write(self._fd, record)
                if written != len(record):
                    raise OSError(errno.ENOSPC, f"short write ({written} of {len(record)} bytes)")
            except OSError:
                self._cut_back(FILE_HEADER.size + size)
                raise
            try:
                os.fsync(self._fd)
            except OSError as error:
                self._broken = f"fsync failed ({error}); reopen the store"
                raise
            self._journal_sizes[self._generation] = size + len(record)

    def _cut_back(self, length: int) -> None:
        try:
            os.ftruncate(self._fd, length)
        except OSError as error:
            self._broken = f"cannot cut a failed append back ({error}); reopen the store"

    # -- compaction ---------------------------------------------------------------------------

    def journal_bytes(self) -> int:
        """Bytes of records that no base holds yet (what a restart would replay)."""
        with self._lock:
            return sum(self._journal_sizes.values())

    def compaction_due(self) -> bool:
        """True when the journal has outgrown its base (and the floor) and no compaction runs."""
        if self._compaction is not None and self._compaction.is_alive():
            return False
        return self.journal_bytes() > max(self._base_size, self._min_compaction_bytes)

    def start_compaction(self, snapshot: bytes) -> None:
        """Make `snapshot` the new base in a background thread; appends go on meanwhile.

        `snapshot` must be exactly the base plus every record appended so far: the caller
        prints it and calls this under the lock that orders its appends. Waits for a previous
        compaction first. Raises if the new journal cannot be created (nothing changed then);
        a failure of the background part is logged and reported by `wait_compaction`.
        """
        self._join_compaction()
        with self._lock:
            if self._broken is not None:
                raise JournalError(f"{self._files.journal(self._generation)}: {self._broken}")
            generation = self._generation + 1
            path = self._files.journal(generation)
            write_atomically(path, FILE_HEADER.pack(FILE_MAGIC, generation))
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            os.close(self._fd)
            self._fd = fd
            self._generation = generation
            self._journal_sizes[generation] = 0
            self._compaction_error = None
            self._compaction = threading.Thread(target=self._install_base, args=(generation, snapshot),
                                                name=f"compact-{generation}", daemon=True)
            self._compaction.start()

    def compact(self, snapshot: bytes) -> None:
        """Make `snapshot` the new base now (same contract as `start_compaction`, but waits)."""
        self.start_compaction(snapshot)
        self.wait_compaction()

    def wait_compaction(self) -> None:
        """Wait for a running compaction; raise what made it fail, if it did."""
        self._join_compaction()
        if self._compaction_error is not None:
            error, self._compaction_error = self._compaction_error, None
            raise JournalError(f"compaction failed: {error}") from error

    def _join_compaction(self) -> None:
        if self._compaction is not None:
            self._compaction.join()

    def _install_base(self, generation: int, snapshot: bytes) -> None:
        """Steps 2 and 3 of the protocol (background thread)."""
        try:
            write_atomically(self._files.base(generation), snapshot)
        except BaseException as error:
            log.error("%s: compaction failed, the journal goes on: %s", self._files.base(generation), error)
            self._compaction_error = error
            return
        with self._lock:
            self._base_generation = generation
            self._base_size = len(snapshot)
            for older in [g for g in self._journal_sizes if g < generation]:
                del self._journal_sizes[older]
        bases, journals, _ = self._files.scan()
        obsolete = [p for g, p in (*bases.items(), *journals.items()) if g < generation]
        if self._files.legacy.exists():
            obsolete.append(self._files.legacy)
        try:
            _remove(obsolete, self._dir_fd)
        except OSError as error:
            log.warning("%s: cannot remove the files compaction replaced (next start will): %s",
                        self._files.directory, error)

    # -- state --------------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """The generation appends go to."""
        return self._generation

    @property
    def base_generation(self) -> int:
        """The generation of the newest durable base."""
        return self._base_generation

    def close(self) -> None:
        """Wait for a running compaction, then close the files (writes nothing)."""
        self._join_compaction()
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                os.close(self._dir_fd)
                os.close(self._lock_fd)
                self._fd = -1
                self._broken = "closed"


def _remove(paths: list[Path], dir_fd: int) -> None:
    """Remove files and make their removal durable."""
    for path in paths:
        path.unlink(missing_ok=True)
    if paths:
        os.fsync(dir_fd)
