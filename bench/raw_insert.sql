INSERT INTO raw_queue (q_name, data) VALUES ('bench', '{"kind":"Cox"}');
