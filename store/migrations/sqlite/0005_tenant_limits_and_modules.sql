-- A tenant's limits, as a JSON document naming only what differs from the
-- defaults (see `TenantLimits`).
ALTER TABLE tenants ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';

-- Which tenant uploaded which module: a tenant sees, downloads and binds
-- only its own uploads, and its activity modules serve only its workflows.
-- The bytes stay shared in `modules` (content-addressed).
CREATE TABLE tenant_modules (
    tenant         TEXT NOT NULL,
    digest         TEXT NOT NULL REFERENCES modules(digest),
    kind           TEXT NOT NULL,             -- 'workflow' | 'activity'
    uploaded_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, digest)
);

-- Counting a tenant's running executions on every start.
CREATE INDEX executions_by_status ON executions (tenant, status);
