-- Cluster mode, stage 2: one audit log for every replica
-- (crates/server/src/cluster/log.rs).

-- The leaves, in log order. `record` is exactly the bytes the file log stores
-- for the record (crates/server/src/audit/record.rs, v2 framing), so `log
-- import` is a copy. The primary key on idx makes a fork impossible: two
-- sequencers can never both write one index.
CREATE TABLE log_leaves (
    idx bigint PRIMARY KEY CHECK (idx >= 0),
    execution_id uuid NOT NULL UNIQUE,
    record bytea NOT NULL
);

-- One row: the log's size, which the sequencer (the holder of the log's
-- transaction-scoped advisory lock) reads and moves in its transaction.
CREATE TABLE log_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    size bigint NOT NULL CHECK (size >= 0)
);
INSERT INTO log_head (singleton, size) VALUES (true, 0);

-- At most one row: the file log that `wasm-hypervisor log import` copied into
-- the empty log (its record count and root), so that a replica whose data
-- directory holds that file starts.
CREATE TABLE log_import (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    size bigint NOT NULL,
    root bytea NOT NULL,
    imported_ms bigint NOT NULL
);
