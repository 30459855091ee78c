use std::path::Path;
use std::time::SystemTime;

use super::*;
use crate::event::{Metric, StateChange};

type Errors = Vec<(Option<String>, String)>;

fn meta(name: &str, value_type: ValueType, scale: f64, offset: f64) -> FieldMeta {
    FieldMeta {
        scale,
        offset,
        ..FieldMeta::gauge(name, value_type)
    }
}

fn wpm() -> Arc<Schema> {
    let mut mode = meta("operating_mode", ValueType::Int, 1.0, 0.0);
    mode.kind = FieldKind::State;
    mode.labels = Some(BTreeMap::from([(3, "Comfort".to_string())]));
    let mut compressor = FieldMeta::gauge("compressor_running", ValueType::Bool);
    compressor.kind = FieldKind::State;
    Arc::new(Schema::new(
        "wpm",
        vec![
            meta("outside_temperature", ValueType::Int, 0.1, 0.0),
            meta("pressure", ValueType::Int, 0.01, 0.0),
            meta("energy_kwh", ValueType::Int, 1.0, 0.0),
            meta("flow", ValueType::Float, 1.0, 0.0),
            meta("valve", ValueType::Int, 1.0, 0.0),
            mode,
            compressor,
        ],
    ))
}

fn config(toml_text: &str) -> ScaleConfig {
    toml::from_str(toml_text).unwrap()
}

fn build(c: &ScaleConfig, schema: &Arc<Schema>) -> Box<dyn Transform> {
    let schemas = std::slice::from_ref(schema);
    BuildContext::alone("scaled", Path::new("."), schemas, &Arc::default(), |cx| c.build(cx)).unwrap()
}

fn poll(schema: &Arc<Schema>, fields: &[(&str, Value)]) -> Event {
    let mut m = Metric::new("hp1", Arc::default(), SystemTime::UNIX_EPOCH, schema.clone());
    for (k, v) in fields {
        m.fields.insert((*k).into(), v.clone());
    }
    m.into()
}

fn run(t: &mut dyn Transform, e: Event) -> Arc<Metric> {
    let mut out = Vec::new();
    t.transform(e, &mut out);
    assert_eq!(out.len(), 1);
    match out.pop().unwrap() {
        Event::Metric(m) => m,
        Event::StateChange(_) => panic!("expected a metric"),
    }
}

fn errors(cx: &Check<'_>) -> Errors {
    cx.errors()
}

fn check(c: &ScaleConfig, schema: &Arc<Schema>) -> (Errors, Vec<Arc<Schema>>) {
    let schemas = std::slice::from_ref(schema);
    let dir = Path::new(".");
    let mut cx = Check::new("scaled", dir, dir, schemas);
    c.check(&mut cx);
    (errors(&cx), cx.outputs.clone())
}

#[test]
fn scale_rounds_to_register_precision() {
    let s = wpm();
    let mut t = build(&ScaleConfig::default(), &s);
    let m = run(
        &mut *t,
        poll(
            &s,
            &[("outside_temperature", Value::Int(3)), ("pressure", Value::Int(1035))],
        ),
    );
    assert_eq!(m.fields["outside_temperature"], Value::Float(0.3));
    assert_eq!(m.fields["outside_temperature"].to_string(), "0.3");
    assert_eq!(m.fields["pressure"], Value::Float(10.35));
    assert_eq!(m.fields["pressure"].to_string(), "10.35");
    let m = run(&mut *t, poll(&s, &[("outside_temperature", Value::Int(-53))]));
    assert_eq!(m.fields["outside_temperature"].to_string(), "-5.3");
}

#[test]
fn decimals_are_those_that_write_the_factor_exactly() {
    assert_eq!(derived_decimals(0.1, 0.0), 1);
    assert_eq!(derived_decimals(0.01, 0.0), 2);
    assert_eq!(derived_decimals(0.5, 0.0), 1);
    assert_eq!(derived_decimals(1.0, 0.0), 0);
    assert_eq!(derived_decimals(0.001, 0.0), 3);
    assert_eq!(derived_decimals(1.0, 0.25), 2);
    assert_eq!(derived_decimals(1.0 / 3.0, 0.0), 2);
    assert_eq!(derived_decimals(100.0 / 4095.0, 0.0), 3);
}

#[test]
fn a_fractional_factor_always_gives_floats_and_factor_one_always_integers() {
    let s = wpm();
    let mut t = build(&ScaleConfig::default(), &s);
    for raw in [200, 215, 0, -10] {
        let m = run(
            &mut *t,
            poll(
                &s,
                &[
                    ("outside_temperature", Value::Int(raw)),
                    ("energy_kwh", Value::Int(raw)),
                ],
            ),
        );
        assert!(matches!(m.fields["outside_temperature"], Value::Float(_)), "raw {raw}");
        assert_eq!(m.fields["energy_kwh"], Value::Int(raw));
    }
    let out = &run(&mut *t, poll(&s, &[])).schema;
    assert!(out.scaled);
    let f = out.field("outside_temperature").unwrap();
    assert_eq!(
        (f.value_type, f.decimals, f.scale, f.offset),
        (ValueType::Float, Some(1), 1.0, 0.0)
    );
    let f = out.field("energy_kwh").unwrap();
    assert_eq!((f.value_type, f.decimals), (ValueType::Int, Some(0)));
}

#[test]
fn events_of_one_model_share_one_output_schema() {
    let s = wpm();
    let mut t = build(&ScaleConfig::default(), &s);
    let a = run(&mut *t, poll(&s, &[("pressure", Value::Int(1))]));
    let b = run(&mut *t, poll(&s, &[("pressure", Value::Int(2))]));
    assert!(Arc::ptr_eq(&a.schema, &b.schema));
}

#[test]
fn bools_enums_and_states_are_never_scaled() {
    let mut mode = meta("mode", ValueType::Int, 0.1, 0.0);
    mode.labels = Some(BTreeMap::from([(1, "On".to_string())]));
    let mut bits = meta("status_bits", ValueType::Int, 10.0, 0.0);
    bits.kind = FieldKind::State;
    let s = Arc::new(Schema::new(
        "m",
        vec![mode, bits, FieldMeta::gauge("on", ValueType::Bool)],
    ));
    let mut t = build(&ScaleConfig::default(), &s);
    let m = run(
        &mut *t,
        poll(
            &s,
            &[
                ("mode", Value::Int(1)),
                ("status_bits", Value::Int(0x41)),
                ("on", Value::Bool(true)),
            ],
        ),
    );
    assert_eq!(m.fields["mode"], Value::Int(1));
    assert_eq!(m.fields["status_bits"], Value::Int(0x41));
    assert_eq!(m.fields["on"], Value::Bool(true));
    assert_eq!(m.schema.field("mode").unwrap().value_type, ValueType::Int);
}

#[test]
fn float_registers_lose_only_arithmetic_noise() {
    let s = Arc::new(Schema::new(
        "m",
        vec![
            meta("power", ValueType::Float, 0.1, 0.0),
            meta("flow", ValueType::Float, 1.0, 0.0),
        ],
    ));
    let mut t = build(&ScaleConfig::default(), &s);
    let m = run(
        &mut *t,
        poll(&s, &[("power", Value::Float(3.0)), ("flow", Value::Float(12.345678))]),
    );
    assert_eq!(m.fields["power"], Value::Float(0.3));
    assert_eq!(m.fields["flow"], Value::Float(12.345678));
    assert_eq!(m.schema.field("power").unwrap().value_type, ValueType::Float);
}

#[test]
fn a_factor_and_offset_override_replaces_the_register_map() {
    let s = wpm();
    let c = config(
        "[fields.outside_temperature]\nfactor = 0.5\noffset = -40\n\n[fields.energy_kwh]\nfactor = 1000\n\n[fields.pressure]\ndecimals = 1\n",
    );
    assert!(check(&c, &s).0.is_empty());
    let mut t = build(&c, &s);
    let m = run(
        &mut *t,
        poll(
            &s,
            &[
                ("outside_temperature", Value::Int(81)),
                ("energy_kwh", Value::Int(12)),
                ("pressure", Value::Int(1035)),
            ],
        ),
    );
    assert_eq!(m.fields["outside_temperature"], Value::Float(0.5));
    assert_eq!(m.fields["energy_kwh"], Value::Int(12_000));
    assert_eq!(m.fields["pressure"], Value::Float(10.4));
    let m = run(&mut *t, poll(&s, &[("outside_temperature", Value::Int(80))]));
    assert_eq!(m.fields["outside_temperature"], Value::Float(0.0));
}

#[test]
fn a_range_override_maps_input_onto_output() {
    let s = wpm();
    let c = config("[fields.valve]\ninput_min = 0\ninput_max = 4095\noutput_min = 0\noutput_max = 100\n");
    assert!(check(&c, &s).0.is_empty());
    let mut t = build(&c, &s);
    let m = run(&mut *t, poll(&s, &[("valve", Value::Int(4095))]));
    assert_eq!(m.fields["valve"], Value::Float(100.0));
    let m = run(&mut *t, poll(&s, &[("valve", Value::Int(2048))]));
    assert_eq!(m.fields["valve"], Value::Float(50.012));
    let c = config("[fields.valve]\ninput_min = 4\ninput_max = 20\noutput_min = -10\noutput_max = 70\ndecimals = 1\n");
    let mut t = build(&c, &s);
    let m = run(&mut *t, poll(&s, &[("valve", Value::Int(12))]));
    assert_eq!(m.fields["valve"], Value::Float(30.0));
}

#[test]
fn mixing_factor_and_range_is_rejected() {
    let c = config("[fields.outside_temperature]\nfactor = 0.1\ninput_min = 0\ninput_max = 1000\noutput_min = 0\noutput_max = 100\n");
    let (errs, _) = check(&c, &wpm());
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].0.as_deref(), Some("fields.outside_temperature.input_min"));
    assert!(errs[0].1.contains("cannot be combined with `factor`"), "{}", errs[0].1);
}

#[test]
fn an_empty_or_partial_input_range_is_rejected() {
    let c = config("[fields.valve]\ninput_min = 5\ninput_max = 5\noutput_min = 0\noutput_max = 100\n");
    let (errs, _) = check(&c, &wpm());
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].0.as_deref(), Some("fields.valve.input_max"));
    let c = config("[fields.valve]\ninput_min = 0\noutput_max = 100\n");
    let (errs, _) = check(&c, &wpm());
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].0.as_deref(), Some("fields.valve"));
    assert!(errs[0].1.contains("missing: input_max, output_min"), "{}", errs[0].1);
}

#[test]
fn an_unknown_field_is_rejected_naming_the_models() {
    let c = config("[fields.outside_temperatur]\nfactor = 0.1\n");
    let (errs, _) = check(&c, &wpm());
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].0.as_deref(), Some("fields.outside_temperatur"));
    assert!(errs[0].1.contains("known models: wpm"), "{}", errs[0].1);
}

#[test]
fn overriding_an_enum_or_a_bool_is_rejected() {
    let c = config("[fields.operating_mode]\nfactor = 2\n\n[fields.compressor_running]\ndecimals = 1\n");
    let (errs, _) = check(&c, &wpm());
    let keys: Vec<_> = errs.iter().map(|e| e.0.as_deref().unwrap()).collect();
    assert_eq!(keys, ["fields.compressor_running", "fields.operating_mode"]);
}

#[test]
fn check_declares_scaled_outputs() {
    let s = wpm();
    let (errs, outputs) = check(&ScaleConfig::default(), &s);
    assert!(errs.is_empty());
    assert_eq!(outputs.len(), 1);
    assert!(outputs[0].scaled);
    assert_eq!(outputs[0].field("pressure").unwrap().value_type, ValueType::Float);
    assert_eq!(outputs[0].field("pressure").unwrap().decimals, Some(2));
}

#[test]
fn already_scaled_events_and_state_changes_pass_unchanged() {
    let s = wpm();
    let mut t = build(&ScaleConfig::default(), &s);
    let once = run(&mut *t, poll(&s, &[("outside_temperature", Value::Int(215))]));
    let twice = run(&mut *t, Event::Metric(once.clone()));
    assert!(Arc::ptr_eq(&once, &twice));
    assert_eq!(twice.fields["outside_temperature"], Value::Float(21.5));

    let sc = Event::from(StateChange {
        device: "hp1".into(),
        tags: Arc::default(),
        field: "compressor_running".into(),
        from: Some(Value::Bool(false)),
        to: Value::Bool(true),
        at: SystemTime::UNIX_EPOCH,
        from_since: None,
        meta: None,
    });
    let mut out = Vec::new();
    t.transform(sc.clone(), &mut out);
    assert_eq!(out, vec![sc]);
}

#[test]
fn a_value_that_overflows_is_left_out() {
    let s = Arc::new(Schema::new("m", vec![meta("big", ValueType::Int, 1000.0, 0.0)]));
    let mut t = build(&ScaleConfig::default(), &s);
    let m = run(&mut *t, poll(&s, &[("big", Value::Int(i64::MAX / 10))]));
    assert!(!m.fields.contains_key("big"));
    let m = run(&mut *t, poll(&s, &[("big", Value::Int(7))]));
    assert_eq!(m.fields["big"], Value::Int(7000));
}
