-- Undelivered signals and updates per execution, kept by triggers in the
-- transaction that posts, delivers or moves a message: the bound on them
-- (MAILBOX_UNDELIVERED_MAX) is checked at a post by reading one column
-- instead of counting up to 10,000 index entries inside the one writer
-- every tenant shares.
ALTER TABLE executions ADD COLUMN undelivered_messages INTEGER NOT NULL DEFAULT 0;

UPDATE executions SET undelivered_messages = (
    SELECT count(*) FROM mailbox
    WHERE mailbox.execution_id = executions.id
      AND mailbox.delivered_position IS NULL AND mailbox.kind IN ('signal', 'update'))
WHERE id IN (SELECT execution_id FROM mailbox
             WHERE delivered_position IS NULL AND kind IN ('signal', 'update'));

CREATE TRIGGER mailbox_count_posted AFTER INSERT ON mailbox
WHEN NEW.delivered_position IS NULL AND NEW.kind IN ('signal', 'update')
BEGIN
    UPDATE executions SET undelivered_messages = undelivered_messages + 1 WHERE id = NEW.execution_id;
END;

CREATE TRIGGER mailbox_count_delivered AFTER UPDATE OF delivered_position ON mailbox
WHEN OLD.delivered_position IS NULL AND NEW.delivered_position IS NOT NULL
     AND OLD.kind IN ('signal', 'update')
BEGIN
    UPDATE executions SET undelivered_messages = undelivered_messages - 1 WHERE id = OLD.execution_id;
END;

-- A continue-as-new moves the undelivered messages to the next run.
CREATE TRIGGER mailbox_count_moved AFTER UPDATE OF execution_id ON mailbox
WHEN OLD.execution_id <> NEW.execution_id
     AND OLD.delivered_position IS NULL AND NEW.delivered_position IS NULL
     AND OLD.kind IN ('signal', 'update')
BEGIN
    UPDATE executions SET undelivered_messages = undelivered_messages - 1 WHERE id = OLD.execution_id;
    UPDATE executions SET undelivered_messages = undelivered_messages + 1 WHERE id = NEW.execution_id;
END;
