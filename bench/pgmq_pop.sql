-- PGMQ's cheapest peer of pq_get.sql: pgmq.pop takes the oldest visible message and deletes it
-- in one statement (FOR UPDATE SKIP LOCKED); commit consumes it, rollback puts it back. Same
-- transactional behaviour as pgmq_read.sql without the visibility-timeout UPDATE.
SELECT msg_id, message FROM pgmq.pop('bench');
