-- Undelivered signals and updates per execution, kept by a trigger in the
-- transaction that posts, delivers or moves a message: the bound on them
-- (MAILBOX_UNDELIVERED_MAX) is checked at a post by reading the run's row,
-- which the post locks anyway, instead of counting up to 10,000 index
-- entries.
ALTER TABLE executions ADD COLUMN undelivered_messages BIGINT NOT NULL DEFAULT 0;

UPDATE executions SET undelivered_messages = counted.undelivered
FROM (SELECT execution_id, count(*) AS undelivered FROM mailbox
      WHERE delivered_position IS NULL AND kind IN ('signal', 'update')
      GROUP BY execution_id) AS counted
WHERE executions.id = counted.execution_id;

CREATE FUNCTION count_undelivered_messages() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.delivered_position IS NULL AND NEW.kind IN ('signal', 'update') THEN
            UPDATE executions SET undelivered_messages = undelivered_messages + 1
            WHERE id = NEW.execution_id;
        END IF;
    ELSIF OLD.delivered_position IS NULL AND OLD.kind IN ('signal', 'update') THEN
        IF NEW.delivered_position IS NOT NULL THEN
            UPDATE executions SET undelivered_messages = undelivered_messages - 1
            WHERE id = OLD.execution_id;
        ELSIF NEW.execution_id <> OLD.execution_id THEN
            -- A continue-as-new moves the undelivered messages to the next run.
            UPDATE executions SET undelivered_messages = undelivered_messages - 1
            WHERE id = OLD.execution_id;
            UPDATE executions SET undelivered_messages = undelivered_messages + 1
            WHERE id = NEW.execution_id;
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER mailbox_count_undelivered
    AFTER INSERT OR UPDATE OF delivered_position, execution_id ON mailbox
    FOR EACH ROW EXECUTE FUNCTION count_undelivered_messages();
