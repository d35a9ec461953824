-- Deletes up to $2 finished jobs dequeued before $1, the oldest first: done jobs, and failed
-- task jobs too when $3 (they are kept until requeued or purged). Found through the
-- *_done_idx index, so a purge never reads pending jobs; rows another transaction has locked
-- are left for the next round.
DELETE FROM {table}
WHERE id IN (SELECT id FROM {table}
             WHERE dequeued_at < $1 AND ($3 OR NOT data ? 'failed_at')
             ORDER BY dequeued_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED)
RETURNING id
