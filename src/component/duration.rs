//! Durations in component configs: humantime strings (`"10s"`, `"1h 30m"`), bounded
//! by [`MAX`] so that adding any configured duration to a clock reading (a poll's
//! due time, a batch deadline, a retry) cannot overflow and panic. Use as
//! `#[serde(with = "crate::component::duration")]` on `Duration` and
//! `Option<Duration>` fields.

use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest duration a config may hold: a year, far beyond any useful
/// interval or timeout and far below what a clock reading can take.
pub const MAX: Duration = Duration::from_secs(365 * 86_400);

/// A duration field: a `Duration`, or an optional one.
pub trait DurationField: Sized {
    fn longest(&self) -> Option<Duration>;
}

impl DurationField for Duration {
    fn longest(&self) -> Option<Duration> {
        Some(*self)
    }
}

impl DurationField for Option<Duration> {
    fn longest(&self) -> Option<Duration> {
        *self
    }
}

pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
where
    T: DurationField,
    humantime_serde::Serde<T>: Deserialize<'de>,
    D: Deserializer<'de>,
{
    let value: T = humantime_serde::deserialize(d)?;
    match value.longest() {
        Some(long) if long > MAX => Err(D::Error::custom(format!(
            "{} is longer than a year, the longest duration hpflow takes",
            humantime::format_duration(long)
        ))),
        _ => Ok(value),
    }
}

pub fn serialize<T, S>(value: &T, s: S) -> Result<S::Ok, S::Error>
where
    for<'a> humantime_serde::Serde<&'a T>: Serialize,
    S: Serializer,
{
    humantime_serde::serialize(value, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct C {
        #[serde(with = "super")]
        d: Duration,
        #[serde(default, with = "super")]
        o: Option<Duration>,
    }

    #[test]
    fn durations_past_a_year_are_refused_with_the_reason() {
        let c: C = toml::from_str("d = \"365days\"\no = \"2h\"").unwrap();
        assert_eq!((c.d, c.o), (MAX, Some(Duration::from_secs(7200))));
        for text in ["d = \"366days\"", "d = \"1s\"\no = \"500000000years\""] {
            let e = toml::from_str::<C>(text).unwrap_err().to_string();
            assert!(e.contains("longer than a year"), "{e}");
        }
    }
}
