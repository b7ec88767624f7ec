-- Running executions per tenant, kept by triggers in the transaction that
-- changes a status: the running_executions_max check at a start reads one
-- row instead of counting (counting made starts O(running): 100,000
-- sleeping executions slowed every start to a crawl).
CREATE TABLE running_executions (
    tenant   TEXT PRIMARY KEY,
    running  INTEGER NOT NULL
);

INSERT INTO running_executions (tenant, running)
    SELECT tenant, count(*) FROM executions WHERE status = 'running' GROUP BY tenant;

CREATE TRIGGER running_on_start AFTER INSERT ON executions
WHEN NEW.status = 'running'
BEGIN
    INSERT INTO running_executions (tenant, running) VALUES (NEW.tenant, 1)
        ON CONFLICT (tenant) DO UPDATE SET running = running + 1;
END;

CREATE TRIGGER running_on_finish AFTER UPDATE OF status ON executions
WHEN OLD.status = 'running' AND NEW.status <> 'running'
BEGIN
    UPDATE running_executions SET running = running - 1 WHERE tenant = NEW.tenant;
END;

CREATE TRIGGER running_on_rerun AFTER UPDATE OF status ON executions
WHEN OLD.status <> 'running' AND NEW.status = 'running'
BEGIN
    INSERT INTO running_executions (tenant, running) VALUES (NEW.tenant, 1)
        ON CONFLICT (tenant) DO UPDATE SET running = running + 1;
END;
