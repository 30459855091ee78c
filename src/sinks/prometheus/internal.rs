//! hpflow's own metrics (`hpflow_*`), read at scrape time from the registries the
//! other components count into.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `hpflow_build_info` | info (gauge at 1) | `version` |
//! | `hpflow_component_events_in_total`, `…_events_out_total`, `…_events_dropped_total`, `hpflow_component_errors_total` | counter | `component_id`, `component_kind`, `component_type` |
//! | `hpflow_component_cpu_seconds_total` (only with `HPFLOW_COMPONENT_CPU=1`: thread CPU time of the component's tasks) | counter | `component_id`, `component_kind`, `component_type` |
//! | `hpflow_influxdb_buffer_points`, `hpflow_influxdb_buffer_bytes` | gauge | `component_id` |
//! | `hpflow_influxdb_writes_total`, `…_points_written_total`, `…_retries_total`, `…_write_failures_total`, `…_points_dropped_total`, `…_points_dead_lettered_total`, `…_dead_letter_dropped_points_total`, `…_dead_letter_dropped_bytes_total`, `…_dead_letter_write_failures_total`, `…_corrupt_bytes_total`, `…_events_skipped_total` | counter | `component_id` |
//! | `hpflow_config_reloads_total` | counter | `result` (`applied`, `refused`) |
//! | `hpflow_config_last_reload_successful`, `hpflow_config_restart_required` | gauge | |
//! | `hpflow_modbus_requests_total` | counter | `component_id`, `device`, `result` (`ok`, `busy`, `illegal_address`, `gateway_failed`, `exception`, `timeout`, `transport`, `wrong_length`: a reply with another number of values than asked, discarded) |
//! | `hpflow_modbus_polls_total`, `…_polls_failed_total`, `…_polls_skipped_total` (ticks missed while a poll ran), `…_connect_failures_total` | counter | `component_id`, `device` |
//! | `hpflow_modbus_polls_on_time_total`, `…_polls_late_total` (a poll is on time when it began within a tenth of its interval, or within 1 s, of its scheduled instant) | counter | `component_id`, `device` |
//! | `hpflow_modbus_request_duration_seconds`, `hpflow_modbus_poll_duration_seconds` | histogram (`le` 0.005 … 10, `+Inf`) | `component_id`, `device` |
//! | `hpflow_modbus_device_up`, `hpflow_modbus_consecutive_failures`, `hpflow_modbus_last_success_timestamp_seconds`, `hpflow_modbus_last_poll_duration_seconds` | gauge | `component_id`, `device` |

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use crate::telemetry::{cpu, DeliverySnapshot, DeviceHealth, Histogram, Registry, RequestResult};

use super::exposition::{family, Format};
use super::names::{push_help, push_label};
use super::plan::{Family, Kind, Num};

fn fam(name: &str, kind: Kind, help: &str, unit: Option<&str>) -> Family {
    let sample = match kind {
        Kind::Counter => format!("{name}_total"),
        Kind::Info => format!("{name}_info"),
        Kind::Gauge | Kind::StateSet => name.to_string(),
    };
    Family {
        name: name.to_string(),
        sample,
        kind,
        help: help.to_string(),
        unit: unit.map(str::to_string),
    }
}

fn int(v: u64) -> Num {
    Num::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

/// Appends every `hpflow_*` family that has samples.
pub fn render(out: &mut String, format: Format, registry: &Arc<Registry>, health: &[DeviceHealth]) {
    let mut version = String::new();
    push_label(&mut version, "version", env!("CARGO_PKG_VERSION"));
    family(
        out,
        format,
        &fam("hpflow_build", Kind::Info, "hpflow's version", None),
        &[(version, Num::Int(1))],
    );

    let components = registry.snapshot();
    let labels: Vec<String> = components
        .iter()
        .map(|(id, kind, ty, _)| {
            let mut s = String::new();
            push_label(&mut s, "component_id", id);
            s.push(',');
            push_label(&mut s, "component_kind", kind);
            s.push(',');
            push_label(&mut s, "component_type", ty);
            s
        })
        .collect();
    type Pick = fn(&crate::telemetry::ComponentCounts) -> u64;
    let per_component: [(&str, &str, Pick); 4] = [
        ("hpflow_component_events_in", "Events a component received", |c| {
            c.events_in
        }),
        (
            "hpflow_component_events_out",
            "Events a component sent on or delivered",
            |c| c.events_out,
        ),
        (
            "hpflow_component_events_dropped",
            "Events dropped: a full queue, a full buffer",
            |c| c.events_dropped,
        ),
        ("hpflow_component_errors", "Errors a component logged", |c| c.errors),
    ];
    for (name, help, pick) in per_component {
        let rows: Vec<(String, Num)> = components
            .iter()
            .zip(&labels)
            .map(|((_, _, _, counts), l)| (l.clone(), int(pick(counts))))
            .collect();
        family(out, format, &fam(name, Kind::Counter, help, None), &rows);
    }
    if cpu::enabled() {
        let rows: Vec<(String, Num)> = components
            .iter()
            .zip(&labels)
            .map(|((_, _, _, counts), l)| (l.clone(), Num::Float(counts.cpu_nanos as f64 / 1e9)))
            .collect();
        family(
            out,
            format,
            &fam(
                "hpflow_component_cpu_seconds",
                Kind::Counter,
                "Thread CPU time spent in a component's tasks (HPFLOW_COMPONENT_CPU=1)",
                None,
            ),
            &rows,
        );
    }

    let reloads = registry.reloads().snapshot();
    let result = |r: &str| {
        let mut l = String::new();
        push_label(&mut l, "result", r);
        l
    };
    family(
        out,
        format,
        &fam(
            "hpflow_config_reloads",
            Kind::Counter,
            "Configuration reloads (SIGHUP or a changed file), by result: applied, refused (errors)",
            None,
        ),
        &[
            (result("applied"), int(reloads.applied)),
            (result("refused"), int(reloads.refused)),
        ],
    );
    family(
        out,
        format,
        &fam(
            "hpflow_config_last_reload_successful",
            Kind::Gauge,
            "1 when the last configuration reload was applied (or none was tried), 0 when it was refused",
            None,
        ),
        &[(String::new(), Num::Int(reloads.last_ok.into()))],
    );
    family(
        out,
        format,
        &fam(
            "hpflow_config_restart_required",
            Kind::Gauge,
            "1 when a reloaded change waits for a restart (a component added, removed or reconfigured)",
            None,
        ),
        &[(String::new(), Num::Int(reloads.restart_needed.into()))],
    );

    let influx: Vec<(String, DeliverySnapshot)> = registry
        .deliveries()
        .into_iter()
        .map(|(id, s)| {
            let mut l = String::new();
            push_label(&mut l, "component_id", &id);
            (l, s.snapshot())
        })
        .collect();
    type InfluxPick = fn(&DeliverySnapshot) -> u64;
    let influx_families: [(&str, Kind, &str, Option<&str>, InfluxPick); 13] = [
        (
            "hpflow_influxdb_buffer_points",
            Kind::Gauge,
            "Points waiting in the buffer",
            None,
            |s| s.points_buffered,
        ),
        (
            "hpflow_influxdb_buffer_bytes",
            Kind::Gauge,
            "Bytes the waiting points take in the buffer",
            Some("bytes"),
            |s| s.bytes_buffered,
        ),
        (
            "hpflow_influxdb_writes",
            Kind::Counter,
            "Write requests the server accepted",
            None,
            |s| s.writes_ok,
        ),
        (
            "hpflow_influxdb_points_written",
            Kind::Counter,
            "Points the server accepted",
            None,
            |s| s.points_written,
        ),
        (
            "hpflow_influxdb_retries",
            Kind::Counter,
            "Writes retried after a network error, 5xx, 408 or 429",
            None,
            |s| s.retries,
        ),
        (
            "hpflow_influxdb_write_failures",
            Kind::Counter,
            "Write requests that failed, for any reason",
            None,
            |s| s.failures,
        ),
        (
            "hpflow_influxdb_points_dropped",
            Kind::Counter,
            "Points dropped: buffer full, buffer write failed, memory buffer at shutdown",
            None,
            |s| s.dropped,
        ),
        (
            "hpflow_influxdb_points_dead_lettered",
            Kind::Counter,
            "Points the server rejected, set aside in the dead-letter file",
            None,
            |s| s.dead_lettered,
        ),
        (
            "hpflow_influxdb_dead_letter_dropped_points",
            Kind::Counter,
            "Dead-lettered points lost to dead_letter_max_bytes (the oldest file rotated away)",
            None,
            |s| s.dead_letter_dropped,
        ),
        (
            "hpflow_influxdb_dead_letter_dropped_bytes",
            Kind::Counter,
            "Bytes of dead-lettered points lost to dead_letter_max_bytes",
            None,
            |s| s.dead_letter_dropped_bytes,
        ),
        (
            "hpflow_influxdb_dead_letter_write_failures",
            Kind::Counter,
            "Failed writes of the dead-letter file; the refused points stayed in the buffer",
            None,
            |s| s.dead_letter_failures,
        ),
        (
            "hpflow_influxdb_corrupt_bytes",
            Kind::Counter,
            "Bytes of buffer files set aside as corrupt",
            None,
            |s| s.corrupt_bytes,
        ),
        (
            "hpflow_influxdb_events_skipped",
            Kind::Counter,
            "Events with no field line protocol can carry",
            None,
            |s| s.skipped,
        ),
    ];
    for (name, kind, help, unit, pick) in influx_families {
        let rows: Vec<(String, Num)> = influx.iter().map(|(l, s)| (l.clone(), int(pick(s)))).collect();
        family(out, format, &fam(name, kind, help, unit), &rows);
    }

    modbus(out, format, health);
}

fn modbus(out: &mut String, format: Format, health: &[DeviceHealth]) {
    let labels: Vec<String> = health
        .iter()
        .map(|h| {
            let mut s = String::new();
            push_label(&mut s, "component_id", &h.component);
            s.push(',');
            push_label(&mut s, "device", &h.device);
            s
        })
        .collect();

    let mut requests = Vec::with_capacity(health.len() * RequestResult::ALL.len());
    for (h, l) in health.iter().zip(&labels) {
        for r in RequestResult::ALL {
            let mut l = l.clone();
            l.push(',');
            push_label(&mut l, "result", r.as_str());
            requests.push((l, int(h.requests(r))));
        }
    }
    family(
        out,
        format,
        &fam(
            "hpflow_modbus_requests",
            Kind::Counter,
            "Modbus requests by result",
            None,
        ),
        &requests,
    );

    type Pick = fn(&DeviceHealth) -> Option<Num>;
    let per_device: [(&str, Kind, &str, Option<&str>, Pick); 10] = [
        ("hpflow_modbus_polls", Kind::Counter, "Polls of a device", None, |h| {
            Some(int(h.polls))
        }),
        (
            "hpflow_modbus_polls_failed",
            Kind::Counter,
            "Polls that produced no value",
            None,
            |h| Some(int(h.polls_failed)),
        ),
        (
            "hpflow_modbus_polls_skipped",
            Kind::Counter,
            "Scheduled polls skipped because the previous one was still running",
            None,
            |h| Some(int(h.missed_ticks)),
        ),
        (
            "hpflow_modbus_polls_on_time",
            Kind::Counter,
            "Polls that began within a tenth of the interval, or within 1s, of their scheduled time",
            None,
            |h| Some(int(h.polls_on_time)),
        ),
        (
            "hpflow_modbus_polls_late",
            Kind::Counter,
            "Polls that began later than a tenth of the interval, and over 1s, after their scheduled time",
            None,
            |h| Some(int(h.polls_late)),
        ),
        (
            "hpflow_modbus_connect_failures",
            Kind::Counter,
            "Connection attempts that failed",
            None,
            |h| Some(int(h.connect_failures)),
        ),
        (
            "hpflow_modbus_device_up",
            Kind::Gauge,
            "1 when the device's last poll produced at least one value",
            None,
            |h| Some(Num::Int(h.up.into())),
        ),
        (
            "hpflow_modbus_consecutive_failures",
            Kind::Gauge,
            "Polls in a row that produced nothing",
            None,
            |h| Some(int(h.consecutive_failures)),
        ),
        (
            "hpflow_modbus_last_success_timestamp_seconds",
            Kind::Gauge,
            "Unix time of the device's last successful poll",
            Some("seconds"),
            |h| {
                let t = h.last_success?.duration_since(SystemTime::UNIX_EPOCH).ok()?;
                Some(Num::Float(t.as_secs_f64()))
            },
        ),
        (
            "hpflow_modbus_last_poll_duration_seconds",
            Kind::Gauge,
            "How long the device's last poll took",
            Some("seconds"),
            |h| Some(Num::Float(h.last_poll_duration?.as_secs_f64())),
        ),
    ];
    for (name, kind, help, unit, pick) in per_device {
        let rows: Vec<(String, Num)> = health
            .iter()
            .zip(&labels)
            .filter_map(|(h, l)| Some((l.clone(), pick(h)?)))
            .collect();
        family(out, format, &fam(name, kind, help, unit), &rows);
    }

    type PickHistogram = fn(&DeviceHealth) -> &Histogram;
    let histograms: [(&str, &str, PickHistogram); 2] = [
        (
            "hpflow_modbus_request_duration_seconds",
            "How long Modbus requests took to be answered or to fail",
            |h| &h.request_duration,
        ),
        (
            "hpflow_modbus_poll_duration_seconds",
            "How long polls of a device took, all their requests together",
            |h| &h.poll_duration,
        ),
    ];
    for (name, help, pick) in histograms {
        let rows: Vec<(&str, &Histogram)> = health.iter().zip(&labels).map(|(h, l)| (l.as_str(), pick(h))).collect();
        histogram(out, format, name, help, &rows);
    }
}

/// Writes a histogram family (seconds); `render::header` knows only the
/// single-sample kinds, and a histogram is the one multi-sample family here.
fn histogram(out: &mut String, format: Format, name: &str, help: &str, rows: &[(&str, &Histogram)]) {
    if rows.is_empty() {
        return;
    }
    let om = format == Format::OpenMetrics;
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    push_help(out, help, om);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push_str(" histogram\n");
    if om {
        out.push_str("# UNIT ");
        out.push_str(name);
        out.push_str(" seconds\n");
    }
    // `write!` into a String cannot fail.
    for (labels, h) in rows {
        for (le, n) in h.cumulative() {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{}\"}} {n}", le_value(le));
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count());
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum());
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count());
    }
}

/// A bucket bound as the official clients spell it (`0.25`, `1.0`): OpenMetrics
/// wants `le` in a canonical float form, and a whole number keeps its `.0`.
fn le_value(le: f64) -> String {
    if le.fract() == 0.0 {
        format!("{le:.1}")
    } else {
        le.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_influxdb_counter_has_a_family_with_its_sink_id() {
        let registry = Arc::new(Registry::default());
        let id = "internal_metrics_influx";
        // What an `influxdb` sink does when it is built.
        registry.register_delivery(id);
        let mut out = String::new();
        render(&mut out, Format::Text, &registry, &[]);
        for name in [
            "hpflow_influxdb_points_dead_lettered_total",
            "hpflow_influxdb_dead_letter_dropped_points_total",
            "hpflow_influxdb_dead_letter_dropped_bytes_total",
            "hpflow_influxdb_dead_letter_write_failures_total",
            "hpflow_influxdb_points_dropped_total",
        ] {
            let sample = format!("{name}{{component_id=\"{id}\"}} 0\n");
            assert!(out.contains(&sample), "{sample} missing from:\n{out}");
            // The text format names the sample in its comments.
            assert!(out.contains(&format!("# TYPE {name} counter\n")), "{name}");
        }
    }
}
