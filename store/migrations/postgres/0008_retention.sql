-- Finished executions are deleted after their tenant's retention, oldest
-- first: the sweep reads them by finish time. A child is kept while the
-- execution that started it (`parent_id`) runs, since the parent may not
-- have journaled its outcome yet.
ALTER TABLE executions ADD COLUMN parent_id BIGINT;
CREATE INDEX executions_finished ON executions (tenant, updated_at_ms, id) WHERE status <> 'running';
