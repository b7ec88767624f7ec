-- A run's search attributes: a small JSON object set at the start and
-- upserted by the workflow, copied to the run a continue-as-new starts,
-- and filtered on by lists. TEXT like every payload (returned byte for
-- byte); lists compare `search_attributes::jsonb -> key`.
ALTER TABLE executions ADD COLUMN search_attributes TEXT;
