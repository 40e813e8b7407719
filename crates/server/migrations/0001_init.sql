-- Cluster mode, stage 1: the service's identity, pending sessions (their seeds
-- wrapped under epoch keys) and async answers (sealed receipts). Applied once, in
-- a transaction under an advisory lock, by the first replica that starts
-- (crates/server/src/cluster/migrations.rs). Times are Unix milliseconds.

-- One row: the origin and signing key the service was set up under. A replica
-- with another key or origin refuses to start.
CREATE TABLE cluster_meta (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    origin text NOT NULL,
    key_id text NOT NULL,
    created_ms bigint NOT NULL
);

-- One random AES-256 key per epoch (sessions.ttl_secs long), stored wrapped
-- (AES-256-GCM) under a key derived from the signing key. Deleted once every
-- session of its epoch has expired.
CREATE TABLE wrap_keys (
    epoch bigint PRIMARY KEY,
    wrapped bytea NOT NULL
);

-- Pending sessions: the 32-byte seed of each key pair (RFC 9180 DeriveKeyPair),
-- wrapped under its epoch's key with the session id as associated data. A use
-- deletes the row (DELETE ... RETURNING: exactly once, on any replica).
CREATE TABLE sessions (
    id uuid PRIMARY KEY,
    epoch bigint NOT NULL,
    wrapped_seed bytea NOT NULL,
    expires_ms bigint NOT NULL,
    -- The client it counts against (sessions.max_pending_per_client).
    client bytea NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_ms);
CREATE INDEX sessions_client ON sessions (client, expires_ms);

-- Long jobs (protocol v1.1 §F): state 0 queued, 1 running, 2 done (the sealed
-- receipt's fields), 3 withheld: log unavailable, 4 withheld: internal.
CREATE TABLE async_results (
    id uuid PRIMARY KEY,
    scope bytea NOT NULL,
    state smallint NOT NULL,
    log_index bigint,
    commitment bytea,
    leaf_signature bytea,
    ciphertext bytea,
    status text,
    expires_ms bigint NOT NULL
);
CREATE INDEX async_results_expiry ON async_results (expires_ms);
