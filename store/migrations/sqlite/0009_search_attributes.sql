-- A run's search attributes: a small JSON object set at the start and
-- upserted by the workflow, copied to the run a continue-as-new starts,
-- and filtered on by lists (`search_attributes -> '$."key"'`).
ALTER TABLE executions ADD COLUMN search_attributes TEXT;
