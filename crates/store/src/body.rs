//! How a store keeps an inbox row's raw body: compressed with LZ4 (an LZ4 block after its
//! length, `raw_codec = 'lz4'`), packed on the delivering task before the delivery joins a
//! group commit, so the one writer (SQLite's connection, PostgreSQL's committing backend)
//! writes a third of the bytes and compresses nothing itself: a Vapi end-of-call report of
//! 7 KB packs to 2.4 KB. Only a [`Packed`] delivery is written, so no body is stored unpacked
//! under the codec's name. Rows written before the codec existed read back as they are.

use crate::{NewDelivery, Result, StoreError};

/// A delivery whose body is packed: what the stores write.
pub(crate) struct Packed(NewDelivery);

impl Packed {
    pub fn new(mut d: NewDelivery) -> Packed {
        d.raw_body = pack(&d.raw_body);
        Packed(d)
    }
}

impl std::ops::Deref for Packed {
    type Target = NewDelivery;
    fn deref(&self) -> &NewDelivery {
        &self.0
    }
}

/// The codec of a packed body, as the `raw_codec` column names it.
pub(crate) const LZ4: &str = "lz4";

/// The largest body a packed row may claim to unpack to: far above any webhook the service
/// accepts, so a damaged length fails instead of allocating gigabytes.
const UNPACKED_MAX: usize = 64 << 20;

/// `raw` packed for a row whose `raw_codec` is [`LZ4`].
fn pack(raw: &[u8]) -> Vec<u8> {
    lz4_flex::compress_prepend_size(raw)
}

/// A row's body as it was received, from what the row holds and its codec.
pub(crate) fn unpack(stored: Vec<u8>, codec: Option<&str>) -> Result<Vec<u8>> {
    match codec {
        None => Ok(stored),
        Some(LZ4) => {
            let (size, block) = lz4_flex::block::uncompressed_size(&stored).map_err(|e| damaged(&e.to_string()))?;
            if size > UNPACKED_MAX {
                return Err(damaged("its length is too large"));
            }
            lz4_flex::block::decompress(block, size).map_err(|e| damaged(&e.to_string()))
        }
        Some(other) => Err(damaged(&format!("unknown codec {other:?}"))),
    }
}

fn damaged(why: &str) -> StoreError {
    StoreError::Database(sqlx::Error::Protocol(format!("a stored body does not unpack: {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_body_unpacks_to_the_bytes_received() {
        let report =
            br#"{"message":{"type":"end-of-call-report","artifact":{"transcript":"User: hi\nAI: hello\nUser: hi"}}}"#;
        for raw in [&report[..], b"", b"x"] {
            assert_eq!(unpack(pack(raw), Some(LZ4)).unwrap(), raw);
        }
    }

    #[test]
    fn a_row_written_before_the_codec_reads_back_as_it_is() {
        assert_eq!(unpack(b"{\"a\":1}".to_vec(), None).unwrap(), b"{\"a\":1}");
    }

    #[test]
    fn a_damaged_or_unknown_body_is_an_error_not_an_allocation() {
        let mut huge = u32::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(b"\x10x");
        assert!(unpack(huge, Some(LZ4)).unwrap_err().to_string().contains("too large"));
        assert!(unpack(b"\x01".to_vec(), Some(LZ4)).is_err());
        let mut wrong_length = pack(b"hello, hello, hello");
        wrong_length[0] -= 1;
        assert!(unpack(wrong_length, Some(LZ4)).is_err());
        assert!(unpack(b"abc".to_vec(), Some("zstd")).unwrap_err().to_string().contains("unknown codec"));
    }
}
