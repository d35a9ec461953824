SELECT pq_put('bench', '{"kind":"Cox"}');
