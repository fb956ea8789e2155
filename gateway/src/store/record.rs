//! The on-disk record: the new state of one key, framed and checksummed. The write-ahead log and
//! the snapshots are both sequences of these.
//!
//! ```text
//! magic u32 | payload length u32 | crc32 of payload u32 | payload
//! payload: op u8 (1 put, 2 delete) | namespace length u16 | namespace |
//!          key length u32 | key | expires_at_ms u64 (0: never) | value length u32 | value
//! ```
//!
//! A record logs the key's resulting value, never the operation that produced it, so replaying a
//! record twice is harmless. The magic lets recovery tell a torn tail (nothing valid after the
//! damage) from damage in the middle (valid records follow).

use bytes::Bytes;

/// Marks the start of every record: "TXG1".
const MAGIC: u32 = 0x5458_4731;
const HEADER_BYTES: usize = 12;
/// Largest payload accepted when reading; a length beyond it is damage.
pub(super) const PAYLOAD_BYTES_MAX: usize = 64 * 1024 * 1024;

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;

/// One key's new state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// Namespace.
    pub(crate) namespace: String,
    /// Key.
    pub(crate) key: String,
    /// The value and its expiry; `None` deletes the key.
    pub(crate) value: Option<(Bytes, Option<u64>)>,
}

/// Why bytes at an offset are not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    /// Byte offset of the bad record.
    pub(crate) offset: usize,
    /// What is wrong.
    pub(crate) reason: String,
}

impl Record {
    /// Appends the framed record to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER_BYTES]);
        let op = if self.value.is_some() {
            OP_PUT
        } else {
            OP_DELETE
        };
        out.push(op);
        let namespace = self.namespace.as_bytes();
        out.extend_from_slice(&(namespace.len() as u16).to_le_bytes());
        out.extend_from_slice(namespace);
        out.extend_from_slice(&(self.key.len() as u32).to_le_bytes());
        out.extend_from_slice(self.key.as_bytes());
        let (value, expires) = match &self.value {
            Some((value, expires)) => (value.as_ref(), expires.unwrap_or(0)),
            None => (&[][..], 0),
        };
        out.extend_from_slice(&expires.to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
        let payload = &out[start + HEADER_BYTES..];
        let length = payload.len() as u32;
        let crc = crc32fast::hash(payload);
        out[start..start + 4].copy_from_slice(&MAGIC.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&length.to_le_bytes());
        out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
    }

    /// Reads the record at `offset`: `Ok(None)` at the end of the bytes, the record and the next
    /// offset, or the damage found.
    pub(crate) fn decode(bytes: &[u8], offset: usize) -> Result<Option<(Record, usize)>, Damage> {
        if offset == bytes.len() {
            return Ok(None);
        }
        let damage = |reason: &str| Damage {
            offset,
            reason: reason.to_string(),
        };
        let header = bytes
            .get(offset..offset + HEADER_BYTES)
            .ok_or_else(|| damage("truncated record header"))?;
        if u32_at(header, 0) != MAGIC {
            return Err(damage("no record starts here"));
        }
        let length = u32_at(header, 4) as usize;
        if length > PAYLOAD_BYTES_MAX {
            return Err(damage("implausible record length"));
        }
        let start = offset + HEADER_BYTES;
        let payload = bytes
            .get(start..start + length)
            .ok_or_else(|| damage("truncated record"))?;
        if crc32fast::hash(payload) != u32_at(header, 8) {
            return Err(damage("checksum mismatch"));
        }
        let record = parse_payload(payload).ok_or_else(|| damage("malformed record"))?;
        Ok(Some((record, start + length)))
    }

    /// Whether any intact record starts after `offset` (used to tell a torn tail from damage in
    /// the middle of a file).
    pub(crate) fn any_intact_after(bytes: &[u8], offset: usize) -> bool {
        let magic = MAGIC.to_le_bytes();
        (offset + 1..bytes.len().saturating_sub(HEADER_BYTES - 1))
            .filter(|&at| bytes[at..at + 4] == magic)
            .any(|at| matches!(Record::decode(bytes, at), Ok(Some(_))))
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

/// A cursor over a payload that refuses to read past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32_at(b, 0))
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("eight bytes")))
    }

    fn text(&mut self, n: usize) -> Option<String> {
        self.take(n)
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(str::to_string)
    }
}

fn parse_payload(payload: &[u8]) -> Option<Record> {
    let mut reader = Reader(payload);
    let op = reader.u8()?;
    let namespace_len = reader.u16()? as usize;
    let namespace = reader.text(namespace_len)?;
    let key_len = reader.u32()? as usize;
    let key = reader.text(key_len)?;
    let expires = reader.u64()?;
    let value_len = reader.u32()? as usize;
    let value = reader.take(value_len)?;
    if !reader.0.is_empty() {
        return None;
    }
    let value = match op {
        OP_PUT => Some((
            Bytes::copy_from_slice(value),
            (expires != 0).then_some(expires),
        )),
        OP_DELETE => None,
        _ => return None,
    };
    Some(Record {
        namespace,
        key,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(key: &str, value: Option<&str>) -> Record {
        Record {
            namespace: "saga".into(),
            key: key.into(),
            value: value.map(|v| (Bytes::from(v.to_string()), Some(42))),
        }
    }

    #[test]
    fn records_round_trip_in_sequence() {
        let mut bytes = Vec::new();
        sample("a", Some("one")).encode(&mut bytes);
        sample("b", None).encode(&mut bytes);
        let (first, next) = Record::decode(&bytes, 0).unwrap().unwrap();
        assert_eq!(first, sample("a", Some("one")));
        let (second, end) = Record::decode(&bytes, next).unwrap().unwrap();
        assert_eq!(second, sample("b", None));
        assert_eq!(Record::decode(&bytes, end).unwrap(), None);
    }

    #[test]
    fn any_flipped_byte_or_truncation_is_caught() {
        let mut bytes = Vec::new();
        sample("key", Some("value")).encode(&mut bytes);
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            assert!(
                Record::decode(&damaged, 0).is_err(),
                "flip at {at} slipped through"
            );
            if at > 0 {
                assert!(
                    Record::decode(&bytes[..at], 0).is_err(),
                    "cut at {at} slipped through"
                );
            }
        }
    }

    #[test]
    fn a_torn_tail_has_nothing_intact_after_it() {
        let mut bytes = Vec::new();
        sample("a", Some("1")).encode(&mut bytes);
        let second = bytes.len();
        sample("b", Some("2")).encode(&mut bytes);
        sample("c", Some("3")).encode(&mut bytes);
        let mut middle = bytes.clone();
        middle[second + 14] ^= 1;
        assert!(
            Record::any_intact_after(&middle, second),
            "the third record follows"
        );
        let torn = &bytes[..bytes.len() - 3];
        let third = second + (bytes.len() - second) / 2;
        assert!(!Record::any_intact_after(torn, third));
    }
}
