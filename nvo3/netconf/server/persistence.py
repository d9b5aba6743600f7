"""The running datastore on disk: a base snapshot and a journal of the changes made since.

An acknowledged change costs one fsynced append (`journal.py`), not a rewrite of the whole
configuration: a plain-merge edit-config is recorded as its `<config>` content ("merge"), an
edit with operations made in place as its deletions and merge (`split_edit.SplitEdit`,
"edit"), any other change (an edit made by the Editor, commit, copy-config, a confirmed-commit
rollback) as the whole new configuration ("replace"). When the journal has outgrown its base, the current
configuration becomes the new base in the background (compaction).

At start the base is read and the records are replayed without validating each step (they were
validated when they were acknowledged); the result is validated once, as a whole.
"""

from __future__ import annotations

import logging
from pathlib import Path

import libyang
from lxml import etree

from nvo3.netconf.proto.xml import BASE_NS, PARSER
from nvo3.netconf.server import split_edit
from nvo3.netconf.server.datastore import Snapshot, data_element, print_xml
from nvo3.netconf.server.incremental import release
from nvo3.netconf.server.journal import MIN_COMPACTION_BYTES, Contents, Journal, JournalError, Record
from nvo3.netconf.server.schema import Schema
from nvo3.netconf.server.secrets import SecretBox
from nvo3.netconf.server.split_edit import SplitEdit

log = logging.getLogger(__name__)

MERGE = "merge"
EDIT = "edit"
REPLACE = "replace"


def config_document(children_xml: bytes) -> bytes:
    """A `<config>` document holding the given top-level nodes (the base file's format)."""
    return b'<config xmlns="%s">%s</config>\n' % (BASE_NS.encode(), children_xml)


def _children_xml(document: bytes) -> bytes:
    root = etree.fromstring(document, PARSER)
    return b"".join(etree.tostring(child) for child in root if isinstance(child.tag, str))


class RunningStore:
    """The running datastore's files in a server's state directory."""

    #: Journal bytes below which no compaction is due, however small the base.
    compaction_floor = MIN_COMPACTION_BYTES

    def __init__(self, schema: Schema, state_dir: Path, secrets: SecretBox):
        self.schema = schema
        self.secrets = secrets
        self.journal, contents = Journal.open(state_dir, "running",
                                              min_compaction_bytes=self.compaction_floor)
        try:
            self.loaded = self._replay(contents)
            if secrets.found_clear:          # written before secrets were encrypted
                log.info("running configuration: secrets stored in clear; rewriting them "
                         "encrypted")
                self.journal.start_compaction(config_document(secrets.seal(
                    self.loaded.xml())))
                self.journal.wait_compaction()
                secrets.found_clear = False
        except BaseException:
            self.journal.close()
            raise
        if contents.records:
            log.info("running configuration: base and %d journal records replayed",
                     len(contents.records))

    def _parse(self, xml: bytes) -> libyang.DNode | None:
        return self.schema.context.parse_data_mem(xml, "xml", strict=True, no_state=True,
                                                  parse_only=True) if xml.strip() else None

    def _replay(self, contents: Contents) -> Snapshot:
        tree = self._parse(self.secrets.unseal(_children_xml(contents.base))) \
            if contents.base else None
        try:
            for record in contents.records:
                tree = self._apply(tree, record)
            xml = print_xml(tree.first_sibling()) if tree is not None else b""
        finally:
            if tree is not None:
                tree.first_sibling().free()
        return Snapshot.validated(self.schema, data_element(xml))

    def _apply(self, tree: libyang.DNode | None, record: Record) -> libyang.DNode | None:
        if record.kind == REPLACE:
            if tree is not None:
                tree.first_sibling().free()
            return self._parse(self.secrets.unseal(record.payload))
        if record.kind == MERGE:
            edit = self._parse(self.secrets.unseal(record.payload))
            if edit is None:
                return tree
            if tree is None:
                return edit
            tree.first_sibling().merge(edit, with_siblings=True, destruct=True)
            return tree.first_sibling()
        if record.kind == EDIT:
            if tree is None:
                raise JournalError("an edit record on an empty configuration")
            saved = SplitEdit.from_record(record.payload)
            saved.merge_xml = self.secrets.unseal(saved.merge_xml)
            try:
                applied = split_edit.apply(self.schema, tree, saved)
            except split_edit.NotInPlace as exc:
                raise JournalError(f"an edit record does not apply: {exc}") from None
            release(applied.changes)
            return applied.first
        raise JournalError(f"unknown journal record kind {record.kind!r}")

    def record(self, snapshot: Snapshot, merged_xml: bytes | None = None,
               edit: SplitEdit | None = None) -> None:
        """Make a new running configuration durable before it is acknowledged.

        `merged_xml`: the content of the plain-merge edit that made `snapshot`, or `edit`: the
        edit with operations that made it (short records); without them the whole
        configuration is recorded. Raises JournalError (OSError inside) when the record could
        not be written and synced.
        """
        seal = self.secrets.seal                 # secret leaves are encrypted on disk
        if merged_xml is not None:
            self.journal.append(MERGE, seal(merged_xml))
        elif edit is not None:
            self.journal.append(EDIT, SplitEdit(edit.targets, seal(edit.merge_xml),
                                                None).to_record())
        else:
            self.journal.append(REPLACE, seal(snapshot.xml()))
        if self.journal.compaction_due():
            self.journal.start_compaction(config_document(seal(snapshot.xml())))

    def close(self) -> None:
        """Wait for a compaction under way, then release the files."""
        try:
            self.journal.wait_compaction()
        except JournalError as err:
            log.warning("running configuration: the last compaction failed (%s); the "
                        "journal still holds every change", err)
        self.journal.close()
