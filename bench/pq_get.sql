SELECT * FROM pq_get('bench');
