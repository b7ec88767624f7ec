-- How far each execution's spans have been exported: the position of the
-- last event whose spans an OTLP collector accepted. A restarted process
-- exports the spans of later events (those it could not send before dying)
-- and none of the earlier ones again.
CREATE TABLE span_exports (
    execution_id INTEGER PRIMARY KEY REFERENCES executions(id),
    position     INTEGER NOT NULL
);
