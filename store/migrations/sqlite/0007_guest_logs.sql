-- What workflows logged (SDK log calls, stdout, stderr), live only: a
-- replay logs nothing. Not part of the journal; capped per execution.
CREATE TABLE guest_logs (
    id            INTEGER PRIMARY KEY,
    execution_id  INTEGER NOT NULL REFERENCES executions(id),
    seq           INTEGER NOT NULL,           -- the last command before the line
    level         TEXT NOT NULL,
    source        TEXT NOT NULL,              -- 'log' | 'stdout' | 'stderr'
    message       TEXT NOT NULL,
    logged_at_ms  INTEGER NOT NULL
);
CREATE INDEX guest_logs_by_execution ON guest_logs (execution_id, id);
