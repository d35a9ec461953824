-- Removes periodic job $1.
DELETE FROM {periodic} WHERE name = $1 RETURNING true
