-- PGMQ's peer of pq_get.sql: read one message with a 30 s visibility timeout and delete it, in
-- one statement and so one transaction (autocommit). pq_get claims a job in the caller's
-- transaction: commit consumes it, rollback puts it back at once. Here likewise: pgmq.read's
-- UPDATE (vt, read_ct) row-locks the message (FOR UPDATE SKIP LOCKED, so concurrent readers
-- skip it), pgmq.delete removes it, commit consumes it and rollback undoes both. This is PGMQ's
-- consumer cycle (read with a visibility timeout, process, delete) with the processing inside
-- the claiming transaction, as pq's workers do; the timeout only matters to a reader that
-- commits before deleting. pgmq_pop.sql is the one-call variant (a DELETE ... RETURNING, no
-- visibility timeout) with the same commit/rollback behaviour.
SELECT m.msg_id, m.message, pgmq.delete('bench', m.msg_id) FROM pgmq.read('bench', 30, 1) m;
