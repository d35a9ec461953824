-- Registers function $1 as a task, by role $2; returns a row when it was not registered yet.
INSERT INTO {registry} (function, registered_by) VALUES ($1, $2)
ON CONFLICT (function) DO NOTHING
RETURNING function
