-- The PostgreSQL schema: the same tables as SQLite's migrations 0001-0008,
-- in one step (this backend has no older databases to upgrade).
--
-- Payloads are TEXT, never JSON/JSONB: JSONB reorders keys and rewrites
-- numbers, and histories must come back byte for byte. Times are
-- milliseconds since the epoch (BIGINT), as the SQLite side stores them.

-- Component bytes, content-addressed.
CREATE TABLE modules (
    digest        TEXT PRIMARY KEY,           -- lowercase hex SHA-256 of bytes
    kind          TEXT NOT NULL,              -- 'workflow' | 'activity'
    bytes         BYTEA NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- One row per run of a workflow id.
CREATE TABLE executions (
    id            BIGSERIAL PRIMARY KEY,
    tenant        TEXT NOT NULL,
    workflow_id   TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    workflow_type TEXT NOT NULL,
    module_digest TEXT NOT NULL REFERENCES modules(digest),
    status        TEXT NOT NULL,              -- 'running' | 'completed' | 'failed' | 'cancelled' | 'terminated'
    result        TEXT,                       -- output JSON or error JSON when finished
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    UNIQUE (tenant, workflow_id, run_id)
);
CREATE INDEX executions_by_workflow_id ON executions (tenant, workflow_id, created_at_ms);
-- Lists: newest first within a tenant, and by status.
CREATE INDEX executions_by_created ON executions (tenant, created_at_ms DESC, id DESC);
CREATE INDEX executions_by_status ON executions (tenant, status);
-- Resuming after a restart reads the running ones.
CREATE INDEX executions_running ON executions (id) WHERE status = 'running';

-- The append-only history. (execution_id, position) is the primary key, so a
-- journaled event can never be overwritten: a second write at the same
-- position fails.
CREATE TABLE events (
    execution_id   BIGINT NOT NULL REFERENCES executions(id),
    position       BIGINT NOT NULL,
    kind           TEXT NOT NULL,
    payload        TEXT NOT NULL,             -- the event as JSON text
    recorded_at_ms BIGINT NOT NULL,
    PRIMARY KEY (execution_id, position)
);

-- Signals and cancellation requests. A message is delivered once: the
-- append that journals its delivery sets delivered_position in the same
-- transaction. message_id deduplicates.
CREATE TABLE mailbox (
    id                 BIGSERIAL PRIMARY KEY,
    execution_id       BIGINT NOT NULL REFERENCES executions(id),
    kind               TEXT NOT NULL,          -- 'signal' | 'cancel'
    name               TEXT NOT NULL,          -- the signal name ('' for cancel)
    payload            TEXT NOT NULL,          -- JSON text
    message_id         TEXT NOT NULL,
    received_at_ms     BIGINT NOT NULL,
    delivered_position BIGINT,
    UNIQUE (execution_id, message_id)
);
CREATE INDEX mailbox_undelivered ON mailbox (execution_id, id) WHERE delivered_position IS NULL;
CREATE INDEX mailbox_undelivered_by_id ON mailbox (id) WHERE delivered_position IS NULL;

-- Workflow type names bound to module digests, per tenant.
CREATE TABLE workflow_types (
    tenant        TEXT NOT NULL,
    name          TEXT NOT NULL,
    digest        TEXT NOT NULL REFERENCES modules(digest),
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);

-- Tenants: only an API key's SHA-256 is stored. `limits` is a JSON document
-- naming what differs from the defaults (see `TenantLimits`).
CREATE TABLE tenants (
    name          TEXT PRIMARY KEY,
    key_sha256    TEXT NOT NULL UNIQUE,
    limits        TEXT NOT NULL DEFAULT '{}',
    created_at_ms BIGINT NOT NULL
);

-- Which tenant uploaded which module (the bytes stay shared in `modules`).
CREATE TABLE tenant_modules (
    tenant         TEXT NOT NULL,
    digest         TEXT NOT NULL REFERENCES modules(digest),
    kind           TEXT NOT NULL,             -- 'workflow' | 'activity'
    uploaded_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, digest)
);

-- How far each execution's spans were exported (an OTLP collector accepted
-- the spans of events through `position`).
CREATE TABLE span_exports (
    execution_id BIGINT PRIMARY KEY REFERENCES executions(id),
    position     BIGINT NOT NULL
);

-- What workflows logged; not part of the journal; capped per execution.
CREATE TABLE guest_logs (
    id            BIGSERIAL PRIMARY KEY,
    execution_id  BIGINT NOT NULL REFERENCES executions(id),
    seq           BIGINT NOT NULL,            -- the last command before the line
    level         TEXT NOT NULL,
    source        TEXT NOT NULL,              -- 'log' | 'stdout' | 'stderr'
    message       TEXT NOT NULL,
    logged_at_ms  BIGINT NOT NULL
);
CREATE INDEX guest_logs_by_execution ON guest_logs (execution_id, id);

-- Running executions per tenant, kept by a trigger in the transaction that
-- changes a status. A start locks its tenant's row (creating it if needed)
-- before it checks the limit, so starts of one tenant are serialized across
-- every process sharing the database and the limit holds.
CREATE TABLE running_executions (
    tenant   TEXT PRIMARY KEY,
    running  BIGINT NOT NULL
);

CREATE FUNCTION count_running_executions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status = 'running' THEN
            INSERT INTO running_executions (tenant, running) VALUES (NEW.tenant, 1)
                ON CONFLICT (tenant) DO UPDATE SET running = running_executions.running + 1;
        END IF;
    ELSIF OLD.status = 'running' AND NEW.status <> 'running' THEN
        UPDATE running_executions SET running = running - 1 WHERE tenant = NEW.tenant;
    ELSIF OLD.status <> 'running' AND NEW.status = 'running' THEN
        INSERT INTO running_executions (tenant, running) VALUES (NEW.tenant, 1)
            ON CONFLICT (tenant) DO UPDATE SET running = running_executions.running + 1;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER executions_count_running
    AFTER INSERT OR UPDATE OF status ON executions
    FOR EACH ROW EXECUTE FUNCTION count_running_executions();
