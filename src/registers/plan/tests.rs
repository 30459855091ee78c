use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::event::Value;
use crate::registers::{Cells, DataType, Register, RegisterMap, Sample};

const HPMANAGER: &str = include_str!("../testdata/hpmanager_registers.yml");
const SHIPPED: &str = include_str!("../../../config/registers.yml");

fn model(text: &str, name: &str) -> Arc<Model> {
    let map = RegisterMap::parse("registers.yml", text).unwrap_or_else(|e| panic!("{e:#?}"));
    let model = map.model(name).unwrap().clone();
    model
}

fn small(registers: &str) -> Arc<Model> {
    model(
        &format!("models:\n  m:\n    not_available: [0x8000]\n    registers:\n{registers}"),
        "m",
    )
}

fn req(table: Table, start: u16, count: u16) -> ReadRequest {
    ReadRequest {
        table,
        start,
        count,
        optional: false,
        block: None,
    }
}

fn spans(plan: &ReadPlan) -> Vec<(Table, u16, u16)> {
    plan.requests().iter().map(|r| (r.table, r.start, r.count)).collect()
}

const INPUT: Table = Table::InputRegisters;
const HOLDING: Table = Table::HoldingRegisters;

#[test]
fn hpmanager_map_plans_five_requests() {
    let plan = model(HPMANAGER, "stiebel_eltron_wpm").plan(&PlanOptions::default());
    assert_eq!(
        plan.requests(),
        [
            req(INPUT, 506, 42),
            req(HOLDING, 1500, 11),
            req(INPUT, 2500, 4),
            req(INPUT, 3500, 14),
            req(INPUT, 3679, 1),
        ]
    );
}

#[test]
fn plan_summary_counts_requests_registers_and_fields() {
    let plan = model(HPMANAGER, "stiebel_eltron_wpm").plan(&PlanOptions::default());
    assert_eq!(plan.summary(), "5 requests touching 72 registers for 41 fields");
    let text = plan.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[1], "  FC04 input 506 x42");
    assert_eq!(lines[2], "  FC03 holding 1500 x11");
    assert_eq!(lines.len(), 6);
}

#[test]
fn default_options_are_the_documented_ones() {
    let o = PlanOptions::default();
    assert_eq!((o.max_registers, o.max_bits, o.max_gap), (125, 2000, 32));
    assert_eq!(o.reprobe_after, Duration::from_secs(3600));
    let parsed: PlanOptions = toml::from_str("max_gap = 0\nreprobe_after = \"10m\"").unwrap();
    assert_eq!((parsed.max_gap, parsed.max_registers), (0, 125));
    assert_eq!(parsed.reprobe_after, Duration::from_secs(600));
    assert!(toml::from_str::<PlanOptions>("max_gapp = 0").is_err());
}

#[test]
fn shipped_map_plans_few_requests_each_starting_on_a_defined_address() {
    let m = model(SHIPPED, "stiebel_eltron_wpm");
    let plan = m.plan(&PlanOptions::default());
    let required: Vec<(Table, u16, u16)> = spans(&plan).into_iter().take_while(|_| true).collect();
    let required: Vec<_> = required
        .into_iter()
        .zip(plan.requests())
        .filter(|(_, r)| !r.optional)
        .map(|(s, _)| s)
        .collect();
    assert_eq!(
        required,
        vec![
            (INPUT, 500, 111),
            (HOLDING, 1500, 59),
            (HOLDING, 1603, 5),
            (INPUT, 2500, 47),
            (INPUT, 3500, 125),
            (INPUT, 3625, 18),
            (HOLDING, 4000, 3),
            (INPUT, 5000, 2),
        ]
    );
    for r in plan.requests() {
        assert!(r.count >= 1 && r.count <= 125, "{r}");
        let starts_a_value = m
            .registers()
            .iter()
            .any(|g| g.table == r.table && g.address == r.start && g.block == r.block);
        assert!(starts_a_value, "{r} starts on an address the map does not define");
    }
    for g in m.registers() {
        let covered = plan
            .requests()
            .iter()
            .any(|r| r.table == g.table && r.block == g.block && r.start <= g.address && r.end() >= g.end());
        assert!(covered, "{} is not read", g.name);
    }
    // Optional blocks come after the required requests, never merged with them.
    let first_optional = plan.requests().iter().position(|r| r.optional).unwrap();
    assert!(plan.requests()[first_optional..].iter().all(|r| r.optional));
    let vent: Vec<_> = plan
        .requests()
        .iter()
        .filter(|r| r.block.as_deref() == Some("ventilation"))
        .collect();
    assert_eq!(vent.len(), 2);
}

#[test]
fn a_value_is_never_split_across_requests() {
    let mut text = String::new();
    for a in 0..124 {
        text += &format!("      - {{name: r{a}, address: {a}, register_type: input}}\n");
    }
    text += "      - {name: wide, address: 124, register_type: input, data_type: int32}\n";
    text += "      - {name: total, parts: [{address: 130, factor: 1}, {address: 140, factor: 1000}], register_type: input}\n";
    let plan = small(&text).plan(&PlanOptions::default());
    assert_eq!(spans(&plan), vec![(INPUT, 0, 124), (INPUT, 124, 17)]);
    let narrow = small(&text).plan(&PlanOptions {
        max_registers: 4,
        ..PlanOptions::default()
    });
    assert!(
        spans(&narrow).contains(&(INPUT, 130, 11)),
        "the parts stay together: {narrow}"
    );
}

#[test]
fn same_address_fields_are_read_once() {
    let plan = small(
        "      - {name: hi, address: 7, register_type: input, data_type: uint8_high}
      - {name: lo, address: 7, register_type: input, data_type: uint8_low}
      - {name: word, address: 7, register_type: input, data_type: uint16, unit: bitmap, bitmap_fields: {0: b0, 15: b15}}
",
    )
    .plan(&PlanOptions::default());
    assert_eq!(spans(&plan), vec![(INPUT, 7, 1)]);
    let fields = plan.decode(&[Some(RawData::Words(vec![0x8001 + 0x0200]))]);
    assert_eq!(fields.get("hi"), Some(&Value::Int(0x82)));
    assert_eq!(fields.get("lo"), Some(&Value::Int(0x01)));
    assert_eq!(fields.get("b0"), Some(&Value::Bool(true)));
    assert_eq!(fields.get("b15"), Some(&Value::Bool(true)));
}

#[test]
fn max_gap_and_max_registers_are_honoured() {
    let text = "      - {name: a, address: 0, register_type: input}
      - {name: b, address: 10, register_type: input}
      - {name: c, address: 50, register_type: input}
";
    let m = small(text);
    assert_eq!(
        spans(&m.plan(&PlanOptions::default())),
        vec![(INPUT, 0, 11), (INPUT, 50, 1)]
    );
    let no_gap = PlanOptions {
        max_gap: 0,
        ..PlanOptions::default()
    };
    assert_eq!(m.plan(&no_gap).requests().len(), 3);
    let wide_gap = PlanOptions {
        max_gap: 100,
        ..PlanOptions::default()
    };
    assert_eq!(spans(&m.plan(&wide_gap)), vec![(INPUT, 0, 51)]);
    let short = PlanOptions {
        max_registers: 10,
        max_gap: 100,
        ..PlanOptions::default()
    };
    assert_eq!(m.plan(&short).requests().len(), 3);
}

#[test]
fn optional_and_named_blocks_get_requests_of_their_own() {
    let m = model(
        "models:
  m:
    blocks:
      vent: {optional: true}
      fast: {}
    registers:
      - {name: a, address: 10, register_type: input}
      - {name: v, address: 11, register_type: input, block: vent}
      - {name: f, address: 12, register_type: input, block: fast}
      - {name: o, address: 13, register_type: input, optional: true}
      - {name: b, address: 14, register_type: input}
",
        "m",
    );
    let plan = m.plan(&PlanOptions::default());
    let got: Vec<(u16, u16, bool, Option<&str>)> = plan
        .requests()
        .iter()
        .map(|r| (r.start, r.count, r.optional, r.block.as_deref()))
        .collect();
    assert_eq!(
        got,
        vec![
            (10, 5, false, None),
            (12, 1, false, Some("fast")),
            (11, 1, true, Some("vent")),
            (13, 1, true, Some("o")),
        ]
    );
}

#[test]
fn failed_short_or_mismatched_responses_leave_their_fields_absent() {
    let m = small(
        "      - {name: a, address: 0, register_type: input}
      - {name: b, address: 1, register_type: input}
      - {name: c, address: 100, register_type: input}
      - {name: d, address: 200, register_type: input}
",
    );
    let plan = m.plan(&PlanOptions::default());
    assert_eq!(plan.requests().len(), 3);
    let fields = plan.decode(&[Some(RawData::Words(vec![1])), None, Some(RawData::Bits(vec![true]))]);
    assert!(fields.is_empty(), "{fields:?}");
    let fields = plan.decode(&[Some(RawData::Words(vec![1, 2]))]);
    assert_eq!(fields.len(), 2);
    assert_eq!(fields.get("b"), Some(&Value::Int(2)));
}

#[test]
fn coils_are_planned_in_bits_and_decoded_from_padded_replies() {
    let m = small(
        "      - {name: c0, address: 0, register_type: coil}
      - {name: c9, address: 9, register_type: coil}
      - {name: d3, address: 3, register_type: discrete}
",
    );
    let plan = m.plan(&PlanOptions::default());
    assert_eq!(spans(&plan), vec![(Table::Coils, 0, 10), (Table::DiscreteInputs, 3, 1)]);
    assert_eq!(plan.to_string().lines().nth(1), Some("  FC01 coil 0 x10"));
    assert_eq!(
        plan.summary(),
        "2 requests touching 0 registers and 11 bits for 3 fields"
    );
    let mut bits = vec![false; 16];
    bits[0] = true;
    let fields = plan.decode(&[Some(RawData::Bits(bits)), Some(RawData::Bits(vec![true]))]);
    assert_eq!(fields.get("c0"), Some(&Value::Bool(true)));
    assert_eq!(fields.get("c9"), Some(&Value::Bool(false)));
    assert_eq!(fields.get("d3"), Some(&Value::Bool(true)));
}

/// A device memory filled from `Register::encode`, served to whatever requests come.
struct Device {
    words: HashMap<(Table, u16), u16>,
    bits: HashMap<(Table, u16), bool>,
}

impl Device {
    fn serve(&self, r: &ReadRequest) -> RawData {
        let addresses = r.start..r.start + r.count;
        if r.table.is_bits() {
            RawData::Bits(
                addresses
                    .map(|a| self.bits.get(&(r.table, a)).copied().unwrap_or(false))
                    .collect(),
            )
        } else {
            RawData::Words(
                addresses
                    .map(|a| self.words.get(&(r.table, a)).copied().unwrap_or(0))
                    .collect(),
            )
        }
    }
}

fn sample_for(reg: &Register, i: i64) -> Value {
    if !reg.parts.is_empty() {
        return Value::Int(12_000 + i);
    }
    if let Some(first) = reg.labels.as_ref().and_then(|l| l.keys().next()) {
        return Value::Int(*first);
    }
    match reg.data_type {
        DataType::Bool => Value::Bool(i % 2 == 0),
        DataType::Int16 => Value::Int(-i),
        DataType::Float32 | DataType::Float64 => Value::Float(i as f64 + 0.5),
        DataType::String => Value::Text("hp".into()),
        _ if reg.is_bitmap() => Value::Int(0x0041),
        _ => Value::Int(i % 200),
    }
}

#[test]
fn a_simulated_device_serving_encoded_values_decodes_to_the_same_values() {
    for (text, name) in [(SHIPPED, "stiebel_eltron_wpm"), (HPMANAGER, "stiebel_eltron_wpm")] {
        let m = model(text, name);
        let mut device = Device {
            words: HashMap::new(),
            bits: HashMap::new(),
        };
        let mut expected = BTreeMap::new();
        for (i, reg) in m.registers().iter().enumerate() {
            let value = sample_for(reg, i as i64);
            match reg
                .encode(&Sample::Raw(value.clone()))
                .unwrap_or_else(|e| panic!("{e}"))
            {
                Cells::Words(w) => w.into_iter().for_each(|(a, w)| {
                    *device.words.entry((reg.table, a)).or_insert(0) |= w;
                }),
                Cells::Bits(b) => b.into_iter().for_each(|(a, b)| {
                    device.bits.insert((reg.table, a), b);
                }),
            }
            if reg.emits_raw {
                expected.insert(reg.name.clone(), value.clone());
            }
            for b in &reg.bits {
                let raw = value.as_i64().unwrap_or(0);
                expected.insert(b.name.clone(), Value::Bool((raw >> b.bit) & 1 == 1));
            }
        }
        for options in [
            PlanOptions::default(),
            PlanOptions {
                max_gap: 0,
                max_registers: 7,
                ..PlanOptions::default()
            },
        ] {
            let plan = m.plan(&options);
            let responses: Vec<Option<RawData>> = plan.requests().iter().map(|r| Some(device.serve(r))).collect();
            let decoded = plan.decode(&responses);
            assert_eq!(decoded.len(), m.schema().fields.len());
            assert_eq!(decoded, expected);
        }
    }
}

#[test]
fn sentinels_served_by_a_device_make_fields_absent() {
    let m = model(SHIPPED, "stiebel_eltron_wpm");
    let plan = m.plan(&PlanOptions::default());
    let mut words = HashMap::new();
    for reg in m.registers() {
        if let Some(Cells::Words(w)) = reg.encode_not_available() {
            for (a, w) in w {
                words.insert((reg.table, a), w);
            }
        }
    }
    assert!(m.register("active_error").unwrap().encode_not_available().is_none());
    words.insert((INPUT, 2506), 0x8000);
    let device = Device {
        words,
        bits: HashMap::new(),
    };
    let responses: Vec<Option<RawData>> = plan.requests().iter().map(|r| Some(device.serve(r))).collect();
    let decoded = plan.decode(&responses);
    // Only active_error opts out of the sentinel: 0x8000 there means "no active fault".
    assert_eq!(decoded.keys().map(|k| &**k).collect::<Vec<_>>(), vec!["active_error"]);
    assert_eq!(decoded.get("active_error"), Some(&Value::Int(0x8000)));
}
