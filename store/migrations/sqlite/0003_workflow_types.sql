-- Workflow type names bound to module digests (what `start` by type and
-- child workflows resolve). Rebinding a name affects new executions only:
-- an execution is pinned to the digest in its WorkflowStarted event.
CREATE TABLE workflow_types (
    tenant        TEXT NOT NULL,
    name          TEXT NOT NULL,
    digest        TEXT NOT NULL REFERENCES modules(digest),
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);
