-- Pauses queue $2 of table $1 for role $3; returns true if it was not paused (no row otherwise).
INSERT INTO {controls} AS c (tbl, q_name, paused_at, paused_by)
VALUES ($1, $2, now(), $3::regrole)
ON CONFLICT (tbl, q_name) DO UPDATE SET paused_at = now(), paused_by = $3::regrole
    WHERE c.paused_at IS NULL
RETURNING true
