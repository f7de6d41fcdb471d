//! Reading times from a status without trusting them. Anyone with rights on a resource's `status` can
//! write any RFC 3339 time there, and the API server accepts times the clock type here cannot hold
//! (`9999-12-31T23:59:59Z` is past its last instant). Decoded strictly, one such value fails the whole
//! list a watch reads, so every controller of that kind goes blind. Decoded here, a time that does not
//! read is treated as absent (`Option`) or as the Unix epoch, which every rule takes as "long ago": an
//! entry that has expired, a pass that is due. Tested with the out-of-range value.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Deserializer};

/// `Some(time)` for a time that reads, otherwise `None` (use with `#[serde(default)]`).
pub fn optional_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Time>, D::Error> {
    let text: Option<serde_json::Value> = Option::deserialize(d)?;
    Ok(text.as_ref().and_then(serde_json::Value::as_str).and_then(|s| s.parse::<Timestamp>().ok()).map(Time))
}

/// A time that reads, otherwise the Unix epoch ("long ago").
pub fn time_or_epoch<'de, D: Deserializer<'de>>(d: D) -> Result<Time, D::Error> {
    Ok(optional_time(d)?.unwrap_or(Time(Timestamp::UNIX_EPOCH)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Both {
        #[serde(default, deserialize_with = "optional_time")]
        maybe: Option<Time>,
        #[serde(deserialize_with = "time_or_epoch")]
        always: Time,
    }

    fn read(maybe: serde_json::Value, always: serde_json::Value) -> (Option<String>, String) {
        let b: Both = serde_json::from_value(serde_json::json!({"maybe": maybe, "always": always})).unwrap();
        (b.maybe.map(|t| t.0.to_string()), b.always.0.to_string())
    }

    #[test]
    fn times_that_do_not_read_are_absent_or_long_ago() {
        let ok = "2026-12-07T10:00:00Z";
        assert_eq!(read(ok.into(), ok.into()), (Some(ok.to_string()), ok.to_string()));
        for bad in ["9999-12-31T23:59:59Z".into(), "yesterday".into(), serde_json::json!(12), serde_json::json!({})] {
            assert_eq!(read(bad.clone(), bad.clone()), (None, "1970-01-01T00:00:00Z".to_string()), "{bad}");
        }
        let b: Both = serde_json::from_value(serde_json::json!({"always": ok})).unwrap();
        assert!(b.maybe.is_none(), "missing is absent");
    }
}
