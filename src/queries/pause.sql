-- Pauses queue $2 of table $1; returns true if it was not paused (no row otherwise).
INSERT INTO {controls} AS c (tbl, q_name, paused_at, paused_by)
VALUES ($1, $2, now(), current_user::regrole)
ON CONFLICT (tbl, q_name) DO UPDATE SET paused_at = now(), paused_by = current_user::regrole
    WHERE c.paused_at IS NULL
RETURNING true
