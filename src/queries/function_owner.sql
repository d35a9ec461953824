-- What registering function $1 needs to know: its kind and its owner.
SELECT p.prokind::text, p.proowner FROM pg_proc p WHERE p.oid = $1
