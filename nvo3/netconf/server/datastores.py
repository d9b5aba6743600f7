"""running, candidate and startup: locks, commit, confirmed commit, persistence.

Everything here runs under the server's lock; the methods take the calling session's id.
Rules implemented (RFC 6241 sections 7.5, 8.3, 8.4, 7.2):
- a lock held by another session refuses lock (lock-denied, error-info session-id) and any
  write to that datastore (in-use);
- a modified candidate cannot be locked; the candidate lock holder's unlock or end discards
  its changes;
- commit and discard-changes by another session while the candidate is locked are refused;
- a confirmed commit rolls back on timeout, on cancel-commit, and when its session ends unless
  it was given a persist id; a persisted confirmed commit survives a restart.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nvo3.common.files import write_atomically
from nvo3.netconf.proto.errors import RpcError
from nvo3.netconf.server import config_change
from nvo3.netconf.server.datastore import Snapshot, load_snapshot, save_snapshot
from nvo3.netconf.server.journal import JournalError
from nvo3.netconf.server.merge import UNCHANGED, InPlaceMerge, InPlaceMerger
from nvo3.netconf.server.observer import EditedPaths
from nvo3.netconf.server.persistence import RunningStore
from nvo3.netconf.server.schema import Schema
from nvo3.netconf.server.secrets import KEY_FILE, SecretBox
from nvo3.netconf.server.split_edit import SplitEdit

log = logging.getLogger(__name__)

DATASTORES = ("running", "candidate", "startup")
#: Installs a new running configuration (role applier): before, after, and the data paths an
#: in-place edit touched (None: not known); raises RpcError to refuse it.
Installer = Callable[[Snapshot, Snapshot, "tuple[str, ...] | None"], None]


@dataclass
class PendingConfirm:
    """A confirmed commit waiting for its confirming commit."""

    rollback: Snapshot
    owner: int                   # session id
    persist: str | None
    deadline: float              # time.time() at which it rolls back
    timer: threading.Timer | None = None


class Datastores:
    """The three datastores of one server."""

    def __init__(self, schema: Schema, state_dir: Path, installer: Installer,
                 lock: threading.RLock, on_event: Callable[[str, dict], None],
                 secrets_key: Path | None = None):
        self.schema = schema
        self.state_dir = state_dir
        self.installer = installer
        self.lock = lock
        self.on_event = on_event          # ("config-change"| "confirmed-commit", details)
        # secret leaves are encrypted on disk, with a key kept out of the datastores' folder
        self.secrets = SecretBox(schema, secrets_key or Path(state_dir).parent / KEY_FILE)
        self.store = RunningStore(schema, state_dir, self.secrets)
        self.merger = InPlaceMerger(schema)
        self.running = self.store.loaded
        self.startup = load_snapshot(schema, self._file("startup"), self.secrets)
        if self.secrets.found_clear:          # written before secrets were encrypted
            save_snapshot(self._file("startup"), self.startup, self.secrets)
            self.secrets.found_clear = False
        self.candidate = self.running
        self.locks: dict[str, int] = {}
        self.pending: PendingConfirm | None = None

    def _file(self, name: str) -> Path:
        return self.state_dir / f"{name}.xml"

    # -- reading --------------------------------------------------------------------------

    def get(self, name: str) -> Snapshot:
        """The snapshot of datastore `name` (running, candidate or startup)."""
        if name not in DATASTORES:
            raise RpcError("invalid-value", f'unknown datastore "{name}"', type="protocol")
        return getattr(self, name)

    def candidate_modified(self) -> bool:
        """True when the candidate differs from running."""
        return self.candidate is not self.running and self.candidate.xml() != self.running.xml()

    # -- locks ----------------------------------------------------------------------------

    def lock_datastore(self, name: str, session: int) -> None:
        """Lock datastore `name` for `session` (lock-denied when held)."""
        self.get(name)
        holder = self.locks.get(name)
        if holder is not None:
            raise RpcError("lock-denied", f"{name} is locked by session {holder}",
                           type="protocol", info=[("session-id", str(holder))])
        if name == "candidate" and self.candidate_modified():
            raise RpcError("lock-denied", "the candidate has uncommitted changes; commit or "
                           "discard them first", type="protocol", info=[("session-id", "0")])
        self.locks[name] = session

    def unlock_datastore(self, name: str, session: int) -> None:
        """Release `session`'s lock on datastore `name`."""
        self.get(name)
        holder = self.locks.get(name)
        if holder != session:
            why = "is not locked" if holder is None else f"is locked by session {holder}"
            raise RpcError("operation-failed", f"{name} {why}", type="protocol")
        if name == "candidate" and self.candidate_modified():
            log.info("session %d unlocked the candidate: discarding its changes", session)
            self.candidate = self.running      # as at the session's end (Netopeer2, Junos)
        del self.locks[name]

    def check_writable(self, name: str, session: int) -> None:
        """Refuse a write to a datastore another session has locked."""
        holder = self.locks.get(name)
        if holder is not None and holder != session:
            raise RpcError("in-use", f"{name} is locked by session {holder}", type="protocol",
                           info=[("session-id", str(holder))])

    def session_ended(self, session: int) -> None:
        """Release the session's locks; roll back its unconfirmed commit."""
        if self.locks.get("candidate") == session and self.candidate_modified():
            log.info("session %d ended holding the candidate lock: discarding its changes",
                     session)
            self.candidate = self.running
        for name in [n for n, s in self.locks.items() if s == session]:
            del self.locks[name]
        if self.pending and self.pending.owner == session and self.pending.persist is None:
            log.warning("session %d ended before confirming its commit: rolling back", session)
            self._rollback("session-end", session)

    # -- writing --------------------------------------------------------------------------

    def set_candidate(self, snapshot: Snapshot, session: int) -> None:
        """Make `snapshot` the candidate configuration."""
        self.check_writable("candidate", session)
        self.candidate = snapshot

    def set_running(self, snapshot: Snapshot, session: int, merged_xml: bytes | None = None) -> None:
        """Install a new running configuration (role applier, then disk), candidate follows.

        `merged_xml`: the plain-merge edit content that made `snapshot` from running (the
        journal records just that instead of the whole configuration)."""
        self.check_writable("running", session)
        candidate_clean = not self.candidate_modified()
        self._install(snapshot, merged_xml)
        if candidate_clean:
            self.candidate = self.running

    def set_startup(self, snapshot: Snapshot, session: int) -> None:
        """Make `snapshot` the startup configuration (persisted)."""
        self.check_writable("startup", session)
        save_snapshot(self._file("startup"), snapshot, self.secrets)
        self.startup = snapshot

    def delete_startup(self, session: int) -> None:
        """Empty the startup configuration (persisted)."""
        self.check_writable("startup", session)
        self.set_startup(Snapshot.empty(self.schema), session)

    def merge_in_place(self, name: str, xml: bytes, session: int) -> bool:
        """A plain merge of `xml` into `name` (running or candidate) made in its live tree and
        checked incrementally (`merge.InPlaceMerger`), installed like any other edit. False
        when it must take the full path instead: the datastore's tree is shared (candidate not
        yet edited, a confirmed commit's rollback, copied to startup) or the incremental check
        cannot decide. Raises RpcError as the full path would (and then nothing changed)."""
        return self._in_place(name, session, lambda base: self.merger.merge(name, base, xml),
                              merged_xml=xml)

    def in_place_budget(self, name: str) -> float:
        """The largest edit with operations `edit_in_place` may make in `name` (0: none)."""
        base = self.get(name)
        return 0 if self._shared(name, base) else self.merger.budget(base)

    def _shared(self, name: str, base: Snapshot) -> bool:
        """Whether the tree of datastore `name` (`base`) is another's too (candidate not yet
        edited, a confirmed commit's rollback, copied to startup): not editable in place."""
        return any(s is base for s in (self.startup,
                                       self.pending.rollback if self.pending else None,
                                       self.running if name == "candidate" else None))

    def edit_in_place(self, name: str, edit: SplitEdit, session: int) -> bool:
        """An edit with operations (`split_edit.SplitEdit`) made like `merge_in_place`; the
        journal records the split edit. False: `edit.Editor` makes it in a copy (it also
        answers every error such an edit can have)."""
        return self._in_place(name, session, lambda base: self.merger.edit(name, base, edit),
                              split=edit)

    def _in_place(self, name: str, session: int,
                  make: Callable[[Snapshot], InPlaceMerge | str | None],
                  merged_xml: bytes | None = None, split: SplitEdit | None = None) -> bool:
        self.check_writable(name, session)
        base = self.get(name)
        if self._shared(name, base):
            return False
        candidate_clean = name == "running" and not self.candidate_modified()
        merge = make(base)
        if merge is None:
            return False
        if isinstance(merge, InPlaceMerge):
            try:
                if name == "running":
                    self._install(merge.after, merged_xml, changed=True, split=split,
                                  edited=_edited(merge),
                                  edits=config_change.from_changes(merge.changes))
                else:
                    self.candidate = merge.after
            except BaseException:
                merge.revert()
                raise
            merge.keep()
            if candidate_clean:
                self.candidate = self.running
        else:
            assert merge == UNCHANGED
        return True

    def _install(self, snapshot: Snapshot, merged_xml: bytes | None = None,
                 changed: bool = False, split: SplitEdit | None = None,
                 edited: tuple[str, ...] | None = None,
                 edits: list[config_change.Edit] | None = None) -> None:
        """Hand `snapshot` to the role, make it durable, make it running; `changed`: the caller
        knows it differs from running (an in-place edit: no whole-tree comparison);
        `merged_xml` or `split`: the edit that made it (what the journal records); `edited`:
        the data paths it touched, for the role (an in-place edit); `edits`: what it did, for
        netconf-config-change (else found from `merged_xml` or from a comparison)."""
        before = self.running
        if not changed and snapshot.xml() == before.xml():
            return
        self.installer(before, snapshot, edited)  # may raise: nothing changed then
        try:
            self.store.record(snapshot, merged_xml, split)   # durable before anyone is told
        except (OSError, JournalError) as err:
            log.error("the running configuration could not be saved: %s", err)
            try:
                self.installer(snapshot, before, None)  # the role goes back to what is on disk
            except Exception as undo:  # whatever it says, the client must hear of the save
                log.error("the role could not go back to the saved configuration: %s", undo)
            raise RpcError("operation-failed", f"the running configuration could not be "
                           f"saved: {err}") from None
        self.running = snapshot
        if edits is None:
            edits = config_change.from_content(self.schema, merged_xml, before) \
                if merged_xml is not None else config_change.from_diff(self.schema, before,
                                                                       snapshot)
        self.on_event("config-change", {"before": before, "after": snapshot, "edits": edits})

    # -- commit ---------------------------------------------------------------------------

    def _check_candidate_lock(self, session: int, what: str) -> None:
        holder = self.locks.get("candidate")
        if holder is not None and holder != session:
            raise RpcError("in-use", f"{what} refused: the candidate is locked by session "
                           f"{holder}", type="protocol", info=[("session-id", str(holder))])

    def commit(self, session: int, confirmed: bool = False, timeout: int = 600,
               persist: str | None = None, persist_id: str | None = None) -> None:
        """Make the candidate running, or confirm or start a confirmed commit."""
        self._check_candidate_lock(session, "commit")
        pending = self.pending
        if pending:
            self._check_confirm_allowed(pending, session, persist_id)
        elif persist_id is not None:
            raise RpcError("invalid-value", "no confirmed commit is pending for this "
                           "persist-id", type="protocol", info=[("bad-element", "persist-id")])
        self.check_writable("running", session)
        rollback = pending.rollback if pending else self.running
        checked = self.candidate.checked()     # its constraints, delayed to now (raises)
        self._install(checked)
        self.candidate = self.running
        if pending:
            self._stop_timer()
            self.pending = None                   # confirmed (or extended just below)
        if confirmed:
            self.pending = PendingConfirm(rollback, session, persist, time.time() + timeout)
            self._start_timer()
            self.on_event("confirmed-commit", {"event": "extend" if pending else "start",
                                               "session": session, "timeout": timeout})
        elif pending:
            self.on_event("confirmed-commit", {"event": "complete", "session": session})
        self._save_pending()

    def _check_confirm_allowed(self, pending: PendingConfirm, session: int,
                               persist_id: str | None) -> None:
        if pending.persist is not None:
            if persist_id != pending.persist:
                raise RpcError("invalid-value", "a persistent confirmed commit is pending: "
                               "give its persist-id", type="protocol",
                               info=[("bad-element", "persist-id")])
        elif pending.owner != session:
            raise RpcError("in-use", f"a confirmed commit of session {pending.owner} is "
                           "pending", type="protocol",
                           info=[("session-id", str(pending.owner))])

    def cancel_commit(self, session: int, persist_id: str | None = None) -> None:
        """Roll a pending confirmed commit back (<cancel-commit>)."""
        if not self.pending:
            raise RpcError("operation-failed", "no confirmed commit is pending",
                           type="protocol")
        self._check_confirm_allowed(self.pending, session, persist_id)
        self._rollback("cancel", session)

    def discard_changes(self, session: int) -> None:
        """Reset the candidate to running."""
        self._check_candidate_lock(session, "discard-changes")
        self.candidate = self.running

    def _rollback(self, reason: str, session: int = 0) -> None:
        pending = self.pending
        assert pending is not None
        self._stop_timer()
        self.pending = None
        try:
            self._install(pending.rollback)
        except RpcError as err:               # the role refused the old config: keep going
            log.error("rollback of confirmed commit refused by the role: %s", err)
        self.candidate = self.running
        self._save_pending()
        self.on_event("confirmed-commit", {"event": {"timeout": "timeout", "cancel": "cancel",
                                                     "session-end": "cancel"}[reason],
                                           "session": session})

    # -- confirmed-commit timer and its persistence ----------------------------------------

    def _start_timer(self) -> None:
        assert self.pending is not None
        delay = max(0.0, self.pending.deadline - time.time())
        timer = threading.Timer(delay, self._timeout, args=(self.pending,))
        timer.daemon = True
        self.pending.timer = timer
        timer.start()

    def _stop_timer(self) -> None:
        if self.pending and self.pending.timer:
            self.pending.timer.cancel()

    def _timeout(self, pending: PendingConfirm) -> None:
        with self.lock:
            if self.pending is pending:
                log.warning("confirmed commit not confirmed in time: rolling back")
                self._rollback("timeout")

    def _save_pending(self) -> None:
        path = self.state_dir / "confirmed-commit.json"
        if self.pending is None or self.pending.persist is None:
            path.unlink(missing_ok=True)
            return
        save_snapshot(self.state_dir / "confirmed-rollback.xml", self.pending.rollback,
                      self.secrets)
        write_atomically(path, json.dumps({"persist": self.pending.persist,
                                           "deadline": self.pending.deadline}).encode())

    def close(self) -> None:
        """Stop the confirmed-commit timer (the server is stopping; a persisted confirm resumes
        at the next start, an unpersisted one is lost with its sessions)."""
        with self.lock:
            self._stop_timer()
            self.store.close()

    def resume_pending(self) -> None:
        """After a restart: resume a persisted confirmed commit (or roll it back if late)."""
        path = self.state_dir / "confirmed-commit.json"
        if not path.exists():
            return
        saved = json.loads(path.read_text())
        rollback = load_snapshot(self.schema, self.state_dir / "confirmed-rollback.xml",
                                 self.secrets)
        self.pending = PendingConfirm(rollback, 0, saved["persist"], saved["deadline"])
        log.info("resuming persisted confirmed commit %r (%.0f s left)", saved["persist"],
                 saved["deadline"] - time.time())
        self._start_timer()


def _edited(merge: InPlaceMerge) -> tuple[str, ...]:
    """The data paths of the nodes an in-place edit created, changed or deleted."""
    c = merge.changes
    return EditedPaths.of([n.path for n in c.created], [n.path for n in c.changed],
                          [n.path for n in c.deleted])
