//! Time and identity helpers every stage shares: the wall clock, hour arithmetic, RFC 3339
//! rendering and the FNV-1a content hash used in file names and fingerprints.

/// One hour in milliseconds: the partition unit of every table.
pub const HOUR_MS: i64 = 3_600_000;

/// One day in milliseconds.
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The wall clock, ms since the epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An epoch-ms time as RFC 3339 UTC with milliseconds (empty when out of range).
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// FNV-1a 64 over parts (each followed by a separator byte), as 16 hex digits.
pub fn fnv_hex<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for bytes in parts {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}
