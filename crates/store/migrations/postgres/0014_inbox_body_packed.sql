-- How a row's raw body is kept: NULL as received (rows written before this migration), 'lz4'
-- packed by callbridge before the group commit (see `body.rs`), so the committing backend
-- compresses nothing itself. A packed body does not compress again: kept as it is (EXTERNAL)
-- instead of PostgreSQL trying LZ4 on it.
ALTER TABLE inbox ADD COLUMN raw_codec TEXT;
ALTER TABLE inbox ALTER COLUMN raw_body SET STORAGE EXTERNAL;
