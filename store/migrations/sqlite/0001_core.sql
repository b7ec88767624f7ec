-- Modules: component bytes, content-addressed.
CREATE TABLE modules (
    digest        TEXT PRIMARY KEY,           -- lowercase hex SHA-256 of bytes
    kind          TEXT NOT NULL,              -- 'workflow' | 'activity'
    bytes         BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL
);

-- One row per run of a workflow id.
CREATE TABLE executions (
    id            INTEGER PRIMARY KEY,
    tenant        TEXT NOT NULL,
    workflow_id   TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    workflow_type TEXT NOT NULL,
    module_digest TEXT NOT NULL REFERENCES modules(digest),
    status        TEXT NOT NULL,              -- 'running' | 'completed' | 'failed'
    result        TEXT,                       -- output JSON or error JSON when finished
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    UNIQUE (tenant, workflow_id, run_id)
);
CREATE INDEX executions_by_workflow_id ON executions (tenant, workflow_id, created_at_ms);

-- The append-only history. (execution_id, position) is the primary key, so a
-- journaled event can never be overwritten: a second write at the same
-- position fails.
CREATE TABLE events (
    execution_id   INTEGER NOT NULL REFERENCES executions(id),
    position       INTEGER NOT NULL,
    kind           TEXT NOT NULL,
    payload        TEXT NOT NULL,             -- the event as JSON
    recorded_at_ms INTEGER NOT NULL,
    PRIMARY KEY (execution_id, position)
) WITHOUT ROWID;
