-- Nodes and execution owners, as in PostgreSQL's 0004: the same contract
-- on both backends (SQLite has one node at a time: a process holds the
-- database's lock file while it serves).
CREATE TABLE nodes (
    node_id       TEXT PRIMARY KEY,
    api_url       TEXT,
    lease_ms      INTEGER NOT NULL,
    joined_at_ms  INTEGER NOT NULL,
    renewed_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);

CREATE TABLE leaders (
    role    TEXT PRIMARY KEY,
    node_id TEXT NOT NULL
);

ALTER TABLE executions ADD COLUMN owner_node TEXT;
CREATE INDEX executions_running_by_owner ON executions (owner_node, id) WHERE status = 'running';
