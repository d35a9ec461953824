-- Unregisters function $1; returns a row when it was registered.
DELETE FROM {registry} WHERE function = $1 RETURNING function
