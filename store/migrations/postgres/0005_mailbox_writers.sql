-- The transaction that wrote (or last moved) each mailbox row, as a
-- 64-bit transaction id. Row ids are drawn before commit, so across
-- connections a lower id can commit after a higher one has been read:
-- a watcher that only asks for ids above the newest it has seen would
-- miss it. With the writer's transaction it also asks for every row
-- written by a transaction that was still running at its last read
-- (`pg_snapshot_xmin`), which covers every late commit.
ALTER TABLE mailbox
    ADD COLUMN written_by_xact BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX mailbox_undelivered_by_xact ON mailbox (written_by_xact) WHERE delivered_position IS NULL;
