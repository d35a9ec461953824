-- The two indexes a claim reads straight from (src/queue/candidates.rs), found by what they are,
-- whatever they are named: on table $1, valid btree indexes (no partitioned index: only plain
-- tables are read directly), over columns $2 (q_name, expected_at, id: the ready index) or $3
-- (q_name, schedule_at: the scheduled one), ascending, with q_name's own collation (another
-- one could match other queues' names), without expressions, with
-- pq_create_table's predicates. NULL where a table lacks one: claims then use candidates.sql.
SELECT (SELECT i.indexrelid FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
        WHERE i.indrelid = $1 AND ic.relkind = 'i' AND ic.relam = 403 AND i.indisvalid AND i.indisready AND i.indexprs IS NULL
          AND i.indkey::text = $2 AND i.indoption::text = '0 0 0'
          AND i.indcollation[0] = (SELECT a.attcollation FROM pg_attribute a
                                   WHERE a.attrelid = $1 AND a.attname = 'q_name')
          AND pg_get_expr(i.indpred, i.indrelid) = '((dequeued_at IS NULL) AND (schedule_at IS NULL))'
        ORDER BY i.indexrelid LIMIT 1),
       (SELECT i.indexrelid FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
        WHERE i.indrelid = $1 AND ic.relkind = 'i' AND ic.relam = 403 AND i.indisvalid AND i.indisready AND i.indexprs IS NULL
          AND i.indkey::text = $3 AND i.indoption::text = '0 0'
          AND i.indcollation[0] = (SELECT a.attcollation FROM pg_attribute a
                                   WHERE a.attrelid = $1 AND a.attname = 'q_name')
          AND pg_get_expr(i.indpred, i.indrelid) = '((dequeued_at IS NULL) AND (schedule_at IS NOT NULL))'
        ORDER BY i.indexrelid LIMIT 1)
