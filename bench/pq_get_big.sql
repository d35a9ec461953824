SELECT * FROM pq_get('big');
