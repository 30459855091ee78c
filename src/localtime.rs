//! The system's time zone, found without reading the whole time zone database.
//!
//! `jiff::tz::TimeZone::system()` walks every folder of /usr/share/zoneinfo
//! to list the zone names before it follows /etc/localtime: about a hundred
//! system calls, the slowest step of hpflow's start-up after the register map
//! (the `efficiency` transform and the dashboard both need the local day).
//! When `TZ` is unset and /etc/localtime links into a zoneinfo folder, as on
//! Debian, Alpine and in containers, the linked file is read directly under
//! its IANA name; anything else is jiff's.

use jiff::tz::TimeZone;

/// The local time zone, as `TimeZone::system()` finds it.
pub fn system() -> TimeZone {
    linked("/etc/localtime").unwrap_or_else(TimeZone::system)
}

/// The zone whose TZif file `path` links to, named as jiff names it (the
/// target's path after `zoneinfo/`).
fn linked(path: &str) -> Option<TimeZone> {
    if std::env::var_os("TZ").is_some() {
        return None;
    }
    let target = std::fs::read_link(path).ok()?;
    let (_, name) = target.to_str()?.rsplit_once("/zoneinfo/")?;
    let data = std::fs::read(path).ok()?;
    TimeZone::tzif(name, &data).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_linked_zone_is_the_one_jiff_finds() {
        if std::env::var_os("TZ").is_none() {
            assert_eq!(system(), TimeZone::system());
        }
    }

    #[test]
    fn a_link_into_zoneinfo_is_read_under_its_iana_name() {
        let zoneinfo = std::path::Path::new("/usr/share/zoneinfo/Europe/Berlin");
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("localtime");
        std::os::unix::fs::symlink(zoneinfo, &link).unwrap();
        if std::env::var_os("TZ").is_none() {
            let tz = linked(link.to_str().unwrap()).expect("a zone");
            assert_eq!(tz.iana_name(), Some("Europe/Berlin"));
            assert_eq!(tz, TimeZone::get("Europe/Berlin").unwrap());
        }
        // A plain file is not a link: jiff's search decides.
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"not a zone").unwrap();
        assert!(linked(plain.to_str().unwrap()).is_none());
    }
}
