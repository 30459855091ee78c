use super::*;
use crate::event::{FieldKind, ValueType};
use crate::registers::{DataType, Part};

const HPMANAGER: &str = include_str!("../testdata/hpmanager_registers.yml");
const SHIPPED: &str = include_str!("../../../config/registers.yml");

fn parse(text: &str) -> Result<RegisterMap, Vec<Diagnostic>> {
    RegisterMap::parse("registers.yml", text)
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match parse(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e,
    }
}

fn one_model(text: &str) -> Arc<Model> {
    let map = parse(text).unwrap_or_else(|e| panic!("{e:#?}"));
    let model = map.models().next().unwrap().clone();
    model
}

fn wrap(registers: &str) -> String {
    format!("models:\n  m:\n    registers:\n{registers}")
}

#[test]
fn hpmanager_registers_file_loads_unchanged() {
    let map = parse(HPMANAGER).unwrap();
    let model = map.model("stiebel_eltron_wpm").unwrap();
    assert_eq!(model.registers().len(), 29);
    assert_eq!(
        model.description(),
        Some("Stiebel Eltron heat pumps with WPM (Heat Pump Manager)")
    );

    let schema = model.schema();
    // 29 registers, operating_status adds 12 bits, evu_release's bit replaces its word.
    assert_eq!(schema.fields.len(), 29 + 12);
    let t = schema.field("outside_temperature").unwrap();
    assert_eq!(t.unit.as_deref(), Some("celsius"));
    assert_eq!(t.scale, 0.1);
    assert_eq!(t.value_type, ValueType::Int);
    assert_eq!(t.kind, FieldKind::Gauge);
    assert_eq!(t.source.as_deref(), Some("input 506"));
    assert_eq!(t.decimals, None);

    let mode = schema.field("operating_mode").unwrap();
    assert_eq!(mode.kind, FieldKind::State);
    assert_eq!(mode.unit, None);
    assert_eq!(
        mode.labels.as_ref().unwrap().get(&3).map(String::as_str),
        Some("Comfort mode")
    );
    assert_eq!(mode.source.as_deref(), Some("holding 1500"));

    let status = schema.field("operating_status").unwrap();
    assert_eq!((status.value_type, status.kind), (ValueType::Int, FieldKind::State));
    let bit = schema.field("compressor_running").unwrap();
    assert_eq!((bit.value_type, bit.kind), (ValueType::Bool, FieldKind::State));
    assert_eq!(bit.source.as_deref(), Some("input 2500 bit 6"));
    assert_eq!(schema.field("evu_release").unwrap().value_type, ValueType::Bool);

    let evu = model.register("evu_release").unwrap();
    assert!(!evu.emits_raw);
    let curve = model.register("heating_curve_rise_hk1").unwrap();
    assert_eq!(
        (curve.table, curve.data_type),
        (Table::HoldingRegisters, DataType::Int16)
    );
}

#[test]
fn hpmanager_defaults_are_holding_and_int16() {
    let model = one_model(&wrap("      - name: x\n        address: 5\n"));
    let r = model.register("x").unwrap();
    assert_eq!(
        (r.table, r.data_type, r.byte_order),
        (Table::HoldingRegisters, DataType::Int16, ByteOrder::Abcd)
    );
    assert_eq!((r.scale, r.offset, r.kind), (1.0, 0.0, FieldKind::Gauge));
}

#[test]
fn shipped_config_loads_with_no_error_and_keeps_hpmanager_names_at_hpmanager_addresses() {
    let shipped = parse(SHIPPED).unwrap_or_else(|e| panic!("{e:#?}"));
    let ours = shipped.model("stiebel_eltron_wpm").unwrap();
    let theirs = parse(HPMANAGER).unwrap();
    let theirs = theirs.model("stiebel_eltron_wpm").unwrap();
    assert_eq!(theirs.registers().len(), 29);
    for old in theirs.registers() {
        let new = ours
            .register(&old.name)
            .unwrap_or_else(|| panic!("{} is missing from config/registers.yml", old.name));
        assert_eq!(
            (new.table, new.address, new.count),
            (old.table, old.address, old.count),
            "{}",
            old.name
        );
        assert_eq!((new.data_type, new.scale), (old.data_type, old.scale), "{}", old.name);
        assert_eq!(new.unit, old.unit, "{}", old.name);
        assert_eq!(new.bits, old.bits, "{}", old.name);
        assert_eq!(new.emits_raw, old.emits_raw, "{}", old.name);
        assert_eq!(new.labels.is_some(), old.labels.is_some(), "{}", old.name);
    }
    for name in ["hot_gas_temperature_wpm3i", "high_pressure_wpm3i", "low_pressure_wpm3i"] {
        assert!(ours.register(name).is_some(), "{name}");
    }
}

#[test]
fn shipped_config_covers_the_documented_map() {
    let shipped = parse(SHIPPED).unwrap();
    let m = shipped.model("stiebel_eltron_wpm").unwrap();
    let at = |table: Table, address: u16| {
        m.registers()
            .iter()
            .find(|r| r.table == table && r.addresses().contains(&address))
            .unwrap_or_else(|| panic!("nothing at {table} {address}"))
    };
    let input = Table::InputRegisters;
    let holding = Table::HoldingRegisters;
    for a in (500..=610)
        .chain(819..=834)
        .chain(2500..=2546)
        .chain(3500..=3654)
        .chain(3679..=3684)
        .chain(3689..=3733)
    {
        at(input, a);
    }
    for a in (1500..=1520).chain(1550..=1558).chain(1603..=1607).chain(4000..=4002) {
        at(holding, a);
    }
    assert_eq!(at(input, 5000).name.as_ref(), "sg_ready_operating_state");
    let id = at(input, 5001);
    assert_eq!(
        id.labels.as_ref().unwrap().get(&391).map(String::as_str),
        Some("WPM 3i")
    );
    assert_eq!(at(input, 2504).data_type, DataType::Int16);
    let total = m.register("heat_meter_heating_total").unwrap();
    assert_eq!(
        total.parts,
        vec![
            Part {
                address: 3501,
                factor: 1
            },
            Part {
                address: 3502,
                factor: 1000
            }
        ]
    );
    assert_eq!(total.kind, FieldKind::Counter);
    assert_eq!(m.register("heat_meter_heating_day").unwrap().kind, FieldKind::Gauge);
    assert_eq!(at(input, 516).not_available, vec![0x8000, 0x9000]);
    assert_eq!(at(holding, 1507).not_available, vec![0x8000, 0x9000]);
    assert_eq!(at(input, 506).not_available, vec![0x8000]);
    assert!(at(input, 2506).not_available.is_empty());
    let vent = at(input, 819);
    assert_eq!((vent.block.as_deref(), vent.optional), (Some("ventilation"), true));
    let bits: Vec<&str> = at(input, 2500).bits.iter().map(|b| &*b.name).collect();
    assert_eq!(bits.len(), 12);
    assert_eq!(bits[6], "compressor_running");
    for a in 2508..=2546 {
        assert_eq!(at(input, a).data_type, DataType::Bool, "{a}");
    }
}

#[test]
fn extensions_compile_as_documented() {
    let model = one_model(
        "models:
  m:
    byte_order: CDAB
    not_available: [0x8000, 0x80000000]
    blocks:
      extra: {optional: true}
    registers:
      - {name: w, address: 0, register_type: input, data_type: uint32, not_available: [-1]}
      - {name: hi, address: 2, register_type: input, data_type: uint8_high}
      - {name: lo, address: 2, register_type: input, data_type: uint8_low, byte_order: BADC}
      - {name: s, address: 3, register_type: input, data_type: string, length: 4}
      - {name: e, parts: [{address: 10, factor: 1}, {address: 11, factor: 1000}], register_type: input, kind: counter}
      - {name: c, address: 7, register_type: coil}
      - {name: d, address: 7, register_type: discrete_input}
      - {name: x, address: 20, register_type: input, block: extra, decimals: 1, offset: -40}
      - {name: y, address: 21, register_type: input, optional: true, also_not_available: [0x9000]}
      - {name: z, address: 22, data_type: float64, not_available: []}
",
    );
    let r = |n: &str| model.register(n).unwrap();
    assert_eq!((r("w").count, r("w").byte_order), (2, ByteOrder::Cdab));
    assert_eq!(r("w").not_available, vec![0xffff_ffff]);
    assert_eq!(r("hi").not_available, vec![0x8000]);
    assert_eq!(r("lo").byte_order, ByteOrder::Badc);
    assert_eq!(r("s").count, 4);
    assert!(r("s").not_available.is_empty());
    assert_eq!(
        (r("e").address, r("e").count, r("e").data_type),
        (10, 2, DataType::Uint16)
    );
    assert_eq!(r("e").source(), "input 10+11");
    assert_eq!(
        (r("c").table, r("c").data_type, r("c").kind),
        (Table::Coils, DataType::Bool, FieldKind::State)
    );
    assert_eq!(r("d").table, Table::DiscreteInputs);
    assert_eq!(
        (r("x").block.as_deref(), r("x").optional, r("x").decimals, r("x").offset),
        (Some("extra"), true, Some(1), -40.0)
    );
    assert_eq!((r("y").block.as_deref(), r("y").optional), (Some("y"), true));
    assert_eq!(r("y").not_available, vec![0x8000, 0x9000]);
    // A 64-bit register: the model's 0x80000000 fits, its own empty list wins.
    assert!(r("z").not_available.is_empty());
    assert_eq!(model.schema().field("z").unwrap().value_type, ValueType::Float);
    assert_eq!(model.schema().field("s").unwrap().value_type, ValueType::Text);
    assert_eq!(model.schema().field("e").unwrap().kind, FieldKind::Counter);
}

#[test]
fn identical_spans_may_be_shared_but_partial_overlaps_are_errors() {
    one_model(&wrap(
        "      - {name: a, address: 1, register_type: input}\n      - {name: a_again, address: 1, register_type: input, data_type: uint16}\n",
    ));
    let errs = errors(&wrap(
        "      - {name: wide, address: 1, register_type: input, data_type: int32}\n      - {name: inside, address: 2, register_type: input}\n      - {name: other_table, address: 2}\n",
    ));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].message.contains("`inside`") && errs[0].message.contains("`wide`"),
        "{}",
        errs[0].message
    );
    assert_eq!(errs[0].line, 5);
}

#[test]
fn map_errors_carry_line_numbers_and_register_names() {
    let text = "models:
  m:
    registers:
      - name: ok
        address: 1
      - name: bad_type
        address: 2
        data_type: int17
      - name: bad_table
        address: 3
        register_type: register
      - name: no_length
        address: 4
        data_type: string
      - name: bad_order
        address: 10
        byte_order: ABDC
      - name: big_bit
        address: 11
        data_type: uint16
        unit: bitmap
        bitmap_fields:
          16: too_high
      - name: bad_enum
        address: 12
        unit: enum
        enum_values:
          one: \"One\"
      - name: far
        address: 65535
        data_type: int32
      - name: ok
        address: 20
      - name: wide
        address: 30
        data_type: int32
      - name: straddler
        address: 31
";
    let errs = errors(text);
    let expect = [
        (8, "bad_type", "unknown data_type `int17`"),
        (11, "bad_table", "unknown register_type `register`"),
        (14, "no_length", "needs `length`"),
        (17, "bad_order", "unknown byte_order `ABDC`"),
        (22, "big_bit", "bit 16 is past the top bit 15"),
        (27, "bad_enum", "enum key `one` is not an integer"),
        (30, "far", "runs past the last address 65535"),
        (32, "ok", "name `ok` is already used by register `ok` (line 4)"),
        (38, "straddler", "overlaps register `wide`"),
    ];
    assert_eq!(errs.len(), expect.len(), "{errs:#?}");
    for ((line, name, text), e) in expect.iter().zip(&errs) {
        assert_eq!(e.line, *line, "{e}");
        assert!(e.column > 0, "{e}");
        assert!(e.message.contains(&format!("register `{name}`")), "{e}");
        assert!(e.message.contains(text), "{e}");
        assert_eq!(e.file, PathBuf::from("registers.yml"));
    }
}

#[test]
fn unknown_keys_are_rejected_everywhere() {
    let errs = errors(
        "top: 1
models:
  m:
    colour: red
    blocks:
      b: {optional: true, wat: 1}
    registers:
      - name: a
        adress: 1
        address: 1
        scael: 2
",
    );
    let messages: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(errs.len(), 5, "{messages:#?}");
    assert!(messages.iter().any(|m| m.contains("unknown top-level key `top`")));
    assert!(messages.iter().any(|m| m.contains("unknown key `colour`")));
    assert!(messages
        .iter()
        .any(|m| m.contains("block `b`") && m.contains("unknown key `wat`")));
    let adress = errs.iter().find(|e| e.message.contains("`adress`")).unwrap();
    assert_eq!(adress.line, 9);
    let scael = errs.iter().find(|e| e.message.contains("`scael`")).unwrap();
    assert_eq!(scael.line, 11);
}

#[test]
fn semantic_mistakes_are_reported() {
    let cases = [
        (
            "      - {name: a, address: 1, register_type: coil, data_type: int16}\n",
            "must be bool",
        ),
        ("      - {name: a, address: 1, length: 2}\n", "`length` only applies"),
        ("      - {name: a, address: 1, scale: 0}\n", "scale may not be 0"),
        (
            "      - {name: a, address: 1, data_type: bool, scale: 0.1}\n",
            "cannot be scaled",
        ),
        (
            "      - {name: a, address: 1, data_type: float32, unit: enum}\n",
            "enum labels need",
        ),
        (
            "      - {name: a, address: 1, parts: [{address: 1}]}\n",
            "either `address` or `parts`",
        ),
        (
            "      - {name: a, parts: [{address: 1}, {address: 200}]}\n",
            "more than the 125",
        ),
        ("      - {name: a, parts: [{address: 1, factor: 0}]}\n", "non-zero"),
        (
            "      - {name: a, parts: [{address: 1}], data_type: int32}\n",
            "int16 or uint16",
        ),
        ("      - {name: a, address: 1, block: nope}\n", "unknown block `nope`"),
        ("      - {name: a, address: 1, kind: rate}\n", "unknown kind `rate`"),
        (
            "      - {name: a, address: 1, not_available: [0x10000]}\n",
            "does not fit 16 bits",
        ),
        ("      - {name: a b, address: 1}\n", "may only contain"),
        ("      - {address: 1}\n", "has no `name`"),
        ("      - {name: a}\n", "has no `address`"),
        ("      - {name: a, address: -1}\n", "outside 0..=65535"),
        (
            "      - {name: a, address: 1, unit: enum, bitmap_fields: {0: x}}\n",
            "both an enum and a bitmap",
        ),
        (
            "      - {name: a, address: 1, bitmap_fields: {0: b, 1: b}}\n",
            "already used",
        ),
        (
            "      - {name: a, address: 1, data_type: string, length: 2, not_available: [1]}\n",
            "do not apply to strings",
        ),
        ("      - 42\n", "expected a mapping"),
    ];
    for (register, expected) in cases {
        let errs = errors(&wrap(register));
        assert!(
            errs.iter().any(|e| e.message.contains(expected)),
            "{register}: {errs:#?}"
        );
        assert!(errs.iter().all(|e| e.line >= 4), "{register}: {errs:#?}");
    }
}

#[test]
fn yaml_syntax_errors_point_at_the_place() {
    let errs = errors("models:\n  m:\n    registers: [\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.starts_with("invalid YAML"), "{}", errs[0].message);
    assert!(errs[0].line >= 3, "{:?}", errs[0]);
    assert!(!errs[0].message.contains(" at line "), "{}", errs[0].message);
}

#[test]
fn a_missing_file_is_one_file_error() {
    let errs = RegisterMap::load("/nonexistent/registers.yml").unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, 0);
    assert!(errs[0].message.contains("cannot read"));
}

#[test]
fn weird_yaml_is_an_error_never_a_panic() {
    let snippets = [
        "",
        "~",
        "[]",
        "models:",
        "models: []",
        "models: {}",
        "models: {m: 3}",
        "models: {m: {}}",
        "models: {m: {registers: {}}}",
        "models: {m: {registers: []}}",
        "models: {m: {registers: [[]]}}",
        "models: {m: {registers: [{name: [1]}]}}",
        "models: {m: {registers: [{name: a, address: 99999999999999999999}]}}",
        "models: {m: {registers: [{name: a, address: 1.5}]}}",
        "models: {m: {registers: [{name: a, address: 1, enum_values: [1, 2]}]}}",
        "models: {m: {registers: [{name: a, address: 1, bitmap_fields: {x: y}}]}}",
        "models: {m: {registers: [{name: a, address: 65535, data_type: string, length: 125}]}}",
        "models: {m: {registers: [{name: a, parts: []}]}}",
        "models: {m: {registers: [{name: a, parts: [{factor: 2}]}]}}",
        "models: {m: {registers: [{name: a, address: !tag 1}]}}",
        "models: {m: {registers: [{? [1] : 2}]}}",
        "models: {m: {blocks: [1], registers: [{name: a, address: 1}]}}",
        "models: {m: {blocks: {b: 1}, registers: [{name: a, address: 1, block: b, optional: false}]}}",
        "models: {m: {byte_order: XYZW, not_available: x, registers: [{name: a, address: 1}]}}",
        "models: {m: {registers: [{name: a, address: 1, decimals: 300}]}}",
        "models: {m: {registers: [{name: a, address: 1, scale: .nan}]}}",
        "models:\n  m:\n    registers:\n      - name: \"unterminated\n",
        "a: &x [*x]",
        "models: {<<: {m: 1}}",
        "\u{feff}models: {m: {registers: [{name: 'é', address: 1}]}}",
        "\t\tmodels:\n\t- x",
    ];
    for text in snippets {
        let result = std::panic::catch_unwind(|| parse(text));
        match result {
            Ok(Ok(_)) => panic!("accepted {text:?}"),
            Ok(Err(errs)) => assert!(!errs.is_empty(), "{text:?}"),
            Err(_) => panic!("panicked on {text:?}"),
        }
    }
}

#[test]
fn every_error_of_the_file_is_reported_at_once() {
    let errs = errors(
        "models:
  a:
    registers:
      - {name: x, address: 1, data_type: nope}
  b:
    registers:
      - {name: y, address: 1, register_type: nope}
      - {name: z, address: 2, byte_order: nope}
",
    );
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert_eq!(errs.iter().map(|e| e.line).collect::<Vec<_>>(), vec![4, 7, 8]);
    assert!(errs[1].message.contains("model `b`"));
}

#[test]
fn a_models_manufacturer_is_read_and_carried_on_its_schema() {
    let m =
        one_model("models:\n  m:\n    manufacturer: \"Acme Heat\"\n    registers:\n      - {name: a, address: 1}\n");
    assert_eq!(m.manufacturer(), Some("Acme Heat"));
    assert_eq!(m.schema().manufacturer.as_deref(), Some("Acme Heat"));
    let m = one_model(&wrap("      - {name: a, address: 1}\n"));
    assert_eq!(m.manufacturer(), None);
    let shipped = parse(SHIPPED).unwrap();
    assert_eq!(
        shipped.model("stiebel_eltron_wpm").unwrap().manufacturer(),
        Some("Stiebel Eltron")
    );
    let errs = errors("models:\n  m:\n    manufacturer: \" \"\n    registers:\n      - {name: a, address: 1}\n");
    assert!(errs[0].message.contains("`manufacturer` is empty"), "{errs:?}");
    assert_eq!(errs[0].line, 3);
    // The same model with another maker is another model (a reload notices).
    let a = parse("models:\n  m:\n    manufacturer: A\n    registers:\n      - {name: a, address: 1}\n").unwrap();
    let b = parse("models:\n  m:\n    manufacturer: B\n    registers:\n      - {name: a, address: 1}\n").unwrap();
    assert_ne!(a.model("m"), b.model("m"));
}

#[test]
fn a_shared_load_reuses_a_map_still_held_and_only_for_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registers.yml");
    std::fs::write(&path, HPMANAGER).unwrap();
    let a = RegisterMap::load_shared(&path).unwrap();
    let b = RegisterMap::load_shared(&path).unwrap();
    assert!(Arc::ptr_eq(&a, &b), "the same file, still held: one compile");

    // Another text at the same path is compiled anew.
    std::fs::write(&path, SHIPPED).unwrap();
    let c = RegisterMap::load_shared(&path).unwrap();
    assert!(!Arc::ptr_eq(&a, &c));
    assert!(
        c.model("stiebel_eltron_wpm").unwrap().registers().len()
            > a.model("stiebel_eltron_wpm").unwrap().registers().len()
    );

    // Once nobody holds it, the next load compiles again (nothing is kept).
    std::fs::write(&path, HPMANAGER).unwrap();
    let weak = Arc::downgrade(&a);
    drop((a, b));
    assert!(weak.upgrade().is_none());
    let d = RegisterMap::load_shared(&path).unwrap();
    assert_eq!(d.models().count(), 1);

    // A file with errors is reported as by `load`, every time.
    std::fs::write(&path, "models: [").unwrap();
    assert!(RegisterMap::load_shared(&path).is_err());
    assert!(RegisterMap::load_shared(&path).is_err());
}
