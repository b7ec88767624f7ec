-- Messages sent to an execution from outside: signals and cancellation
-- requests. A message is delivered once: the append that journals its
-- delivery sets delivered_position in the same transaction. message_id
-- deduplicates (a second send with the same id is ignored).
CREATE TABLE mailbox (
    id                 INTEGER PRIMARY KEY,
    execution_id       INTEGER NOT NULL REFERENCES executions(id),
    kind               TEXT NOT NULL,          -- 'signal' | 'cancel'
    name               TEXT NOT NULL,          -- the signal name ('' for cancel)
    payload            TEXT NOT NULL,          -- JSON
    message_id         TEXT NOT NULL,
    received_at_ms     INTEGER NOT NULL,
    delivered_position INTEGER,
    UNIQUE (execution_id, message_id)
);
CREATE INDEX mailbox_undelivered ON mailbox (execution_id, delivered_position);
