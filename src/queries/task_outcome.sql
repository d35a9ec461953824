-- Records a failed attempt of task job $1: appends error $2 to data.errors; when $3 (when to
-- retry) is set, puts the job back in the queue then with retried = $4, otherwise marks it
-- failed at $5. Any payload works: one that is not an object is kept under "data", and an
-- "errors" that is not an array is started afresh, so recording never fails on bad data.
UPDATE {table}
SET data = CASE WHEN jsonb_typeof(data) = 'object' THEN data
                ELSE jsonb_build_object('data', data) END
           || jsonb_build_object('errors',
                  CASE WHEN jsonb_typeof(data -> 'errors') = 'array' THEN data -> 'errors'
                       ELSE '[]'::jsonb END || jsonb_build_array($2))
           || CASE WHEN $3 IS NULL THEN jsonb_build_object('failed_at', $5)
                   ELSE jsonb_build_object('retried', $4) END,
    dequeued_at = CASE WHEN $3 IS NULL THEN dequeued_at END,
    schedule_at = CASE WHEN $3 IS NULL THEN schedule_at ELSE $3 END
WHERE id = $1
RETURNING q_name
