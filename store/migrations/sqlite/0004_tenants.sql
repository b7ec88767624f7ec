-- Tenants and their API keys. Only a key's SHA-256 is stored; the key is
-- shown once, when the tenant is created.
CREATE TABLE tenants (
    name          TEXT PRIMARY KEY,
    key_sha256    TEXT NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL
);
