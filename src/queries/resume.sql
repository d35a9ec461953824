-- Resumes queue $2 of table $1; returns true if it was paused (no row otherwise).
UPDATE {controls} SET paused_at = NULL, paused_by = NULL
WHERE tbl = $1 AND q_name = $2 AND paused_at IS NOT NULL
RETURNING true
