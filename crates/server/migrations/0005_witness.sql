-- Protocol v1.2 §T5 in cluster mode (crates/server/src/cluster/witness.rs): what
-- the witnesses cosigned and what is published, one row every replica reads and
-- serves. Only the replica holding the witness submitters' lease (a session
-- advisory lock on its own connection) submits to the witnesses and writes it.

CREATE TABLE witness_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    -- The published checkpoint's size and its note: the log's signatures and
    -- the witnesses' cosignatures (type 0x04), as /tlog/checkpoint serves it.
    published_size bigint CHECK (published_size >= 0),
    published_note text,
    -- The submitting replica's reason to publish nothing, if any.
    problem text,
    -- JSON by witness name: size (the largest it cosigned or told), cosigned
    -- (this log's), cosignature (its last line), cosigned_at (POSIX seconds),
    -- failures (by kind), last_error.
    witnesses text NOT NULL DEFAULT '{}',
    updated_ms bigint NOT NULL,
    CHECK ((published_size IS NULL) = (published_note IS NULL))
);
