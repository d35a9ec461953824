-- Periodic job $1 ran at $3, putting job $4 (NULL: it failed); its next run is $2.
UPDATE {periodic} SET next_run = $2, last_run = $3, last_job = $4 WHERE name = $1
