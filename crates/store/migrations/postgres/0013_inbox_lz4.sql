-- The inbox's bodies (kilobytes of JSON each) compressed with LZ4 instead of PostgreSQL's
-- default pglz, which costs the backend several times the CPU per row on the ingest path.
-- Servers without LZ4 (built without it, or before PostgreSQL 14) keep pglz: the same rows,
-- only slower to write. Rows stored before keep the compression they were written with.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE inbox ALTER COLUMN raw_body SET COMPRESSION lz4, ALTER COLUMN event SET COMPRESSION lz4';
EXCEPTION WHEN feature_not_supported OR syntax_error OR invalid_parameter_value THEN
    NULL;
END
$$;
