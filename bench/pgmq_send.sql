-- PGMQ's peer of pq_put.sql: one message, same payload, one statement (autocommit). The queue
-- is a plain logged one (pgmq.create); PGMQ sends no NOTIFY unless pgmq.enable_notify_insert
-- was called, so compare it with pq_put under pq.notify=off too.
SELECT * FROM pgmq.send('bench', '{"kind":"Cox"}');
