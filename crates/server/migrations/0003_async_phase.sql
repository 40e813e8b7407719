-- The phase of an unfinished async execution (queued, compiling, running), finer
-- than `state`, for `GET /executions/{id}`'s `phase`. A column of its own,
-- NULL until a replica that knows phases writes one, rather than new `state`
-- values: a replica of an older version reads only `state`, which keeps its
-- meaning, and a row an older replica wrote reads as the phase its state implies.
-- 0 queued, 1 compiling, 2 running.
ALTER TABLE async_results ADD COLUMN phase smallint;
