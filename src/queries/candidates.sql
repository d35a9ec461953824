-- Ready jobs of queue $1 at time $2 (the clock, not now(): a blocking get outlives its
-- transaction's start) in claim order: earliest expected_at first, then those without one,
-- ties by id. Read through a cursor, one candidate at a time. Three arms, each an index scan
-- that starts where it should:
-- * unscheduled jobs with an expected_at, from the queue's head ($4, $5; see heads.rs), and
-- * unscheduled jobs without one, from id $6, both straight from queue_ready_idx: a claim
--   never walks the entries of jobs consumed before the head, which VACUUM cannot remove while
--   any session holds an old snapshot;
-- * scheduled jobs that are due: few, and sorted; the future ones are never visited.
-- The payload is not read, so skipping a candidate never detoasts it; only a client worker's
-- claim ($7) reads each candidate's task function, which it filters on in Rust (a filter here
-- would be pushed into every arm and, in a generic plan, turn the index scans into seq scans).
-- tableoid and ctid address the row version read, whose header tells a job some transaction
-- is claiming (its row is being updated) from one whose advisory lock is merely held (see
-- claim.rs); `scheduled` tells which arm a job came from.
SELECT c.id, CASE WHEN $7 THEN c.data->>'function' END AS function, c.tableoid, c.ctid,
       c.expected_at, c.scheduled
FROM (
    (SELECT id, expected_at, data, tableoid, ctid, false AS scheduled FROM {table}
     WHERE q_name = $1 AND dequeued_at IS NULL AND schedule_at IS NULL
       AND expected_at IS NOT NULL AND (expected_at, id) >= ($4, $5)
     ORDER BY expected_at NULLS LAST, id)
    UNION ALL
    (SELECT id, expected_at, data, tableoid, ctid, false FROM {table}
     WHERE q_name = $1 AND dequeued_at IS NULL AND schedule_at IS NULL
       AND expected_at IS NULL AND id >= $6
     ORDER BY expected_at NULLS LAST, id)
    UNION ALL
    (SELECT id, expected_at, data, tableoid, ctid, true FROM {table}
     WHERE q_name = $1 AND dequeued_at IS NULL AND schedule_at IS NOT NULL AND schedule_at <= $2
     ORDER BY expected_at NULLS LAST, id)
) AS c
ORDER BY c.expected_at NULLS LAST, c.id
-- No real bound ($3 is i64::MAX): a LIMIT makes the generic plan fast-start, as a cursor read
-- one row at a time needs; without it the planner sorts every ready job up front.
LIMIT $3
