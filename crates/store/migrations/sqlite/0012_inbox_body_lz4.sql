-- How a row's raw body is kept: NULL as received (rows written before this migration), 'lz4'
-- compressed (an LZ4 block after its length; see `body.rs`). SQLite has no column compression
-- of its own, and a webhook's body (kilobytes of JSON, most of it a transcript) was most of
-- what the group commit wrote.
ALTER TABLE inbox ADD COLUMN raw_codec TEXT;
