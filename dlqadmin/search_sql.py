"""The SQL of the free-text index (``dlqadmin.models.DeadLetterSearch``) on PostgreSQL.

A dead letter is searchable by its error text and by a bounded prefix of its payload. The text
is written in bulk shortly after the store, by ``dlqadmin.services.search`` (never on the
harvest path, where a trigram index costs more than the whole rest of the store), and by
migration 0016 for the rows that existed before it. Plain strings only (no Django import):
migrations may import it at any point in their history.
"""

#: how much of each payload / error text is searchable (bytes / characters)
PAYLOAD_BYTES = 4096
ERROR_CHARS = 4096

LETTERS = "dlqadmin_deadletter"
SEARCH = "dlqadmin_deadlettersearch"
BACKLOG = "dlqadmin_searchbacklog"

#: the search text of a dead-letter body row ``d``: error class, error message (a prefix), the
#: payload prefix escape-encoded (what ``selectors.BytesContains`` matches: each byte on its
#: own, NUL and bytes >= 0x80 as ``\ooo``, so a text index can hold any payload)
ERROR_TEXT = f"left(d.error_message, {ERROR_CHARS})"
PAYLOAD_TEXT = f"encode(substring(d.payload from 1 for {PAYLOAD_BYTES}), 'escape')"

#: trigram GIN indexes answering ``UPPER(error_class|error_text) LIKE`` (icontains) and
#: ``payload_text LIKE``
INDEXES = {
    "deadlettersearch_class_trgm": f"CREATE INDEX deadlettersearch_class_trgm ON {SEARCH} "
    "USING gin (upper(error_class) gin_trgm_ops)",
    "deadlettersearch_error_trgm": f"CREATE INDEX deadlettersearch_error_trgm ON {SEARCH} "
    "USING gin (upper(error_text) gin_trgm_ops)",
    "deadlettersearch_payload_trgm": f"CREATE INDEX deadlettersearch_payload_trgm ON {SEARCH} "
    "USING gin (payload_text gin_trgm_ops)",
}

#: move up to %(limit)s dead letters from the backlog into the index, oldest first; concurrent
#: indexers skip each other's rows; a row whose dead letter is gone is just dropped
INDEX_BACKLOG = f"""
WITH batch AS (
    DELETE FROM {BACKLOG} WHERE dead_letter_id IN (
        SELECT dead_letter_id FROM {BACKLOG} ORDER BY dead_letter_id LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) RETURNING dead_letter_id
)
INSERT INTO {SEARCH} (dead_letter_id, source_id, error_class, error_text, payload_text)
SELECT d.id, d.source_key, d.error_class, {ERROR_TEXT}, {PAYLOAD_TEXT}
FROM batch JOIN {LETTERS} d ON d.id = batch.dead_letter_id
ON CONFLICT (dead_letter_id) DO NOTHING
RETURNING dead_letter_id
"""  # noqa: S608 - constant identifiers only

#: one dead letter, now (``DeadLetter.save``: a row written through the ORM, not the harvest)
INDEX_ONE = f"""
INSERT INTO {SEARCH} (dead_letter_id, source_id, error_class, error_text, payload_text)
SELECT d.id, d.source_key, d.error_class, {ERROR_TEXT}, {PAYLOAD_TEXT} FROM {LETTERS} d WHERE d.id = %s
ON CONFLICT (dead_letter_id) DO NOTHING
"""  # noqa: S608 - constant identifiers only

#: a payload the indexer decodes in Python (compressed, binary, a schema's record) searches by
#: its decoded text instead: ``%s`` pairs of (dead letter id, text) as two arrays
DECODED_TEXT = f"""
UPDATE {SEARCH} AS s SET payload_text = d.text, decoded = true
FROM unnest(%s::bigint[], %s::text[]) AS d(id, text) WHERE s.dead_letter_id = d.id
"""  # noqa: S608 - constant identifiers only


def escape_encoded(data: bytes) -> str:
    """``data`` as PostgreSQL's ``encode(data, 'escape')`` writes it (``PAYLOAD_TEXT``): NUL and
    bytes >= 0x80 as ``\\ooo``, a backslash doubled, every other byte as itself."""
    return "".join("\\\\" if b == 0x5C else f"\\{b:03o}" if b == 0 or b >= 0x80 else chr(b) for b in data)


#: every stored dead letter (migration 0016's backfill, before the indexes are built)
BACKFILL = f"""
INSERT INTO {SEARCH} (dead_letter_id, source_id, error_class, error_text, payload_text)
SELECT d.id, d.source_key, d.error_class, {ERROR_TEXT}, {PAYLOAD_TEXT} FROM {LETTERS} d
"""  # noqa: S608 - constant identifiers only
