-- Schedules: one JSON document each (the runtime's schedule: spec,
-- workflow, overlap policy, paused, and the watermark of nominal times
-- started), replaced compare-and-swap by `version` because the scheduler
-- and the API both write them.
CREATE TABLE schedules (
    tenant        TEXT NOT NULL,
    schedule_id   TEXT NOT NULL,
    document      TEXT NOT NULL,
    version       BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, schedule_id)
);
