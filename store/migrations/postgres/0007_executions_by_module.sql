-- Deleting a module asks whether any execution ran on it (its bytes stay
-- while a history names them) and how many of the tenant's run on it now.
CREATE INDEX executions_by_module ON executions (module_digest, tenant, status);
