SELECT pq_put('churn', '{"kind":"Cox"}');
SELECT * FROM pq_get('churn');
