//! Parsing what a request asks for, shared by the pages and the JSON API.

use crate::sinks::dashboard::settings::WINDOW_MINUTES;

/// A window in minutes from a query parameter, checked against the allowed range.
pub fn parse_window(given: Option<&str>, default: u32) -> Result<u32, String> {
    let Some(given) = given else { return Ok(default) };
    match given.trim().parse::<u32>() {
        Ok(w) if WINDOW_MINUTES.contains(&w) => Ok(w),
        _ => Err(format!(
            "The window must be a whole number of minutes from {} to {} (got `{given}`).",
            WINDOW_MINUTES.start(),
            WINDOW_MINUTES.end()
        )),
    }
}
