-- Protocol v1.2 §U: each client's usage, shared by the replicas
-- (crates/server/src/cluster/usage.rs). Every replica adds what it counted,
-- about once a second, and reads back every replica's counts.

-- One row per client and window. `client` is `token:<hex of the token's
-- SHA-256>` or `address:<address>` (an IPv6 address cut to its /64);
-- `usage_window` is `hour`, `day` or `total`, and `window_start` its Unix start
-- second (0 for the total). Hour and day rows are deleted a day after their
-- window ends.
CREATE TABLE usage_counts (
    client text NOT NULL,
    usage_window text NOT NULL CHECK (usage_window IN ('hour', 'day', 'total')),
    window_start bigint NOT NULL CHECK (window_start >= 0),
    executions bigint NOT NULL DEFAULT 0 CHECK (executions >= 0),
    fuel bigint NOT NULL DEFAULT 0 CHECK (fuel >= 0),
    bytes_in bigint NOT NULL DEFAULT 0 CHECK (bytes_in >= 0),
    bytes_out bigint NOT NULL DEFAULT 0 CHECK (bytes_out >= 0),
    PRIMARY KEY (client, usage_window, window_start)
);

-- The snapshot every replica reads each second: the rows of the current windows.
CREATE INDEX usage_counts_window ON usage_counts (usage_window, window_start);
