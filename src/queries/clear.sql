-- Deletes every job of queue $1, done or not: Python pq's queue.clear().
DELETE FROM {table} WHERE q_name = $1
