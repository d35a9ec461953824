SELECT count(*) FROM pq_put_many('batch', (SELECT array_agg('{"kind":"Cox"}'::jsonb) FROM generate_series(1, 1000)));
