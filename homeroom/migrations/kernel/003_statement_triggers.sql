-- Statement-level triggers that see the rows a statement changed (transition tables named
-- `changed`): consent's decision facts bump their version this way on every table a decision
-- reads. One installer so each table a migration adds is watched the same way: for each
-- operation in ops (INSERT, UPDATE, DELETE) a trigger named <tbl>_<what>_inserted / _updated /
-- _deleted runs fn() once per statement.
CREATE OR REPLACE FUNCTION homeroom_watch_statements(tbl text, what text, fn text, ops text[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    op text;
BEGIN
    FOREACH op IN ARRAY ops LOOP
        EXECUTE format(
            'CREATE TRIGGER %I AFTER %s ON %I REFERENCING %s TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION %I()',
            tbl || '_' || what || '_' || CASE op WHEN 'INSERT' THEN 'inserted' WHEN 'UPDATE' THEN 'updated'
                                                 WHEN 'DELETE' THEN 'deleted' END,
            op, tbl, CASE op WHEN 'DELETE' THEN 'OLD' ELSE 'NEW' END, fn);
    END LOOP;
END
$$;
