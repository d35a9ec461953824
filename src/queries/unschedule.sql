-- Removes periodic job $1, if role $2 has its owner's rights.
DELETE FROM {periodic} WHERE name = $1 AND pg_has_role($2, owner, 'USAGE') RETURNING true
