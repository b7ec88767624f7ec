-- Nodes: every `reprise serve` process sharing this database, with its
-- lease. A node drives only the running executions it owns; an execution
-- whose owner is not a live node here (its lease passed, it left, or the
-- row was never owned) is an orphan any node may claim. A dead node's row
-- is deleted in the transaction that claims its executions, and every
-- append holds a share lock on its own node's row: a node that lost its
-- row can append nothing more.
CREATE TABLE nodes (
    node_id       TEXT PRIMARY KEY,
    -- Where the node's HTTP API answers other nodes (forwarded worker
    -- polls and reports), if it said.
    api_url       TEXT,
    lease_ms      BIGINT NOT NULL,
    -- Times on the database's clock, so nodes' clocks need not agree.
    joined_at_ms  BIGINT NOT NULL,
    renewed_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);

-- Work one node does for all (the scheduler): which node does it. A role
-- whose node has no row here any more goes to the next node that asks.
CREATE TABLE leaders (
    role    TEXT PRIMARY KEY,
    node_id TEXT NOT NULL
);

ALTER TABLE executions ADD COLUMN owner_node TEXT;
CREATE INDEX executions_running_by_owner ON executions (owner_node, id) WHERE status = 'running';
