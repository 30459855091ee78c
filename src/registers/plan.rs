//! Read planning: a model's registers coalesced into as few requests as the
//! protocol and the options allow, and the decoding of their responses.
//!
//! Rules, in order of precedence:
//! - every request starts on an address the map defines (some gateways, the
//!   Stiebel ISG among them, refuse reads that start on an undocumented one);
//! - the registers of one value are always in one request;
//! - registers read under several names are read once;
//! - a request spans at most `max_gap` unused addresses between two values and
//!   at most `max_registers` (`max_bits`) addresses in all;
//! - each named block, and each optional register, gets requests of its own.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::event::{Fields, Value};

use super::codec::{decode_bit, decode_words, Put};
use super::model::{Model, Table};

/// How a model is planned into requests.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanOptions {
    /// Most registers one read asks for; values above the protocol's 125 are clamped.
    #[serde(default = "default_max_registers")]
    pub max_registers: u16,
    /// Most coils or discrete inputs one read asks for; clamped to 2000.
    #[serde(default = "default_max_bits")]
    pub max_bits: u16,
    /// Most unused addresses a request may span between two values.
    #[serde(default = "default_max_gap")]
    pub max_gap: u16,
    /// How long a refused request or a missing optional block is left alone
    /// before it is tried again.
    #[serde(default = "default_reprobe_after", with = "crate::component::duration")]
    pub reprobe_after: Duration,
}

fn default_max_registers() -> u16 {
    125
}

fn default_max_bits() -> u16 {
    2000
}

/// A request costs a round trip (tens of ms on an ISG, more on a 9600-baud RTU
/// line) while a filled register costs 2 bytes (about 2 ms at 9600 baud), so
/// spanning up to 32 unused registers is still cheaper than a second request.
/// HPManager's own map needs at least 18 (its 522 → 541 hole).
fn default_max_gap() -> u16 {
    32
}

fn default_reprobe_after() -> Duration {
    Duration::from_secs(3600)
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            max_registers: default_max_registers(),
            max_bits: default_max_bits(),
            max_gap: default_max_gap(),
            reprobe_after: default_reprobe_after(),
        }
    }
}

/// One read a source sends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReadRequest {
    pub table: Table,
    pub start: u16,
    pub count: u16,
    /// Part of an optional block: a refusal means "not fitted", not an error.
    pub optional: bool,
    /// The block the request reads (`None`: the model's main block).
    pub block: Option<Arc<str>>,
}

impl ReadRequest {
    pub fn function_code(&self) -> u8 {
        self.table.function_code()
    }

    /// One past the last address read.
    pub fn end(&self) -> u32 {
        u32::from(self.start) + u32::from(self.count)
    }
}

impl fmt::Display for ReadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FC{:02} {} {} x{}",
            self.function_code(),
            self.table,
            self.start,
            self.count
        )
    }
}

/// The answer to one request as the transport returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawData {
    Words(Vec<u16>),
    /// Coils and discrete inputs; a reply padded to whole bytes is fine.
    Bits(Vec<bool>),
}

/// An answer's values, borrowed: the whole of a [`RawData`] or a slice of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'a> {
    Words(&'a [u16]),
    Bits(&'a [bool]),
}

impl RawData {
    pub fn answer(&self) -> Answer<'_> {
        match self {
            RawData::Words(w) => Answer::Words(w),
            RawData::Bits(b) => Answer::Bits(b),
        }
    }
}

/// Addresses `start..end` of one value (or of several values read under one span).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Span {
    pub start: u16,
    pub end: u32,
}

/// The requests that read a model, and how to decode their answers. Cloning
/// it is cheap: the devices of one model share one plan.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    model: Arc<Model>,
    options: PlanOptions,
    requests: Arc<[ReadRequest]>,
    /// The values each request reads, so a refused request can be split between them.
    items: Arc<[Arc<[Span]>]>,
}

impl ReadPlan {
    /// Required requests in address order, then each optional block's.
    pub fn requests(&self) -> &[ReadRequest] {
        &self.requests
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    pub fn options(&self) -> &PlanOptions {
        &self.options
    }

    pub(crate) fn items(&self) -> &[Arc<[Span]>] {
        &self.items
    }

    /// Decodes the responses to [`requests`](Self::requests), one per request
    /// in the same order (`None`: the request failed). A failed, short or
    /// mismatched response leaves its fields absent.
    pub fn decode(&self, responses: &[Option<RawData>]) -> Fields {
        let answers = responses.iter().map(|r| r.as_ref().map(RawData::answer));
        self.model.decode(self.requests.iter().zip(answers))
    }

    /// Register addresses the plan reads (coils and discrete inputs not included).
    pub fn registers_touched(&self) -> u32 {
        self.requests
            .iter()
            .filter(|r| !r.table.is_bits())
            .map(|r| u32::from(r.count))
            .sum()
    }

    /// Coil and discrete-input addresses the plan reads.
    pub fn bits_touched(&self) -> u32 {
        self.requests
            .iter()
            .filter(|r| r.table.is_bits())
            .map(|r| u32::from(r.count))
            .sum()
    }

    /// "5 requests touching 70 registers for 29 fields".
    pub fn summary(&self) -> String {
        let n = self.requests.len();
        let mut s = format!("{n} request{}", if n == 1 { "" } else { "s" });
        let bits = self.bits_touched();
        s += &format!(" touching {} registers", self.registers_touched());
        if bits > 0 {
            s += &format!(" and {bits} bits");
        }
        s += &format!(" for {} fields", self.model.schema().fields.len());
        s
    }
}

/// The summary, then one request a line.
impl fmt::Display for ReadPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())?;
        for r in self.requests.iter() {
            write!(f, "\n  {r}")?;
            match (&r.block, r.optional) {
                (Some(b), true) => write!(f, " (optional block {b})")?,
                (Some(b), false) => write!(f, " (block {b})")?,
                _ => {}
            }
        }
        Ok(())
    }
}

/// Groups sorted, deduplicated spans into requests: `(start, end, items)`.
fn coalesce(spans: &[Span], max_count: u32, max_gap: u32) -> Vec<Vec<Span>> {
    let mut out: Vec<Vec<Span>> = Vec::new();
    let mut current: Option<(u32, u32, Vec<Span>)> = None;
    for &s in spans {
        if let Some((start, end, items)) = &mut current {
            let gap = u32::from(s.start).saturating_sub(*end);
            let new_end = (*end).max(s.end);
            if gap <= max_gap && new_end - *start <= max_count {
                *end = new_end;
                items.push(s);
                continue;
            }
        }
        if let Some((_, _, items)) = current.take() {
            out.push(items);
        }
        current = Some((u32::from(s.start), s.end, vec![s]));
    }
    out.extend(current.map(|(_, _, items)| items));
    out
}

/// The request covering `items` (sorted by start, non-empty).
pub(crate) fn request_for(items: &[Span], table: Table, optional: bool, block: Option<Arc<str>>) -> ReadRequest {
    let start = items.first().map_or(0, |s| s.start);
    let end = items.iter().map(|s| s.end).max().unwrap_or(u32::from(start));
    ReadRequest {
        table,
        start,
        // Every item is at most 125 (2000) wide and a request never grows past
        // the protocol maximum except by a single item, so this fits.
        count: u16::try_from(end - u32::from(start)).unwrap_or(u16::MAX),
        optional,
        block,
    }
}

impl Model {
    /// Plans the reads of every register of this model.
    pub fn plan(self: &Arc<Self>, options: &PlanOptions) -> ReadPlan {
        let max_registers = u32::from(options.max_registers.clamp(1, 125));
        let max_bits = u32::from(options.max_bits.clamp(1, 2000));
        let gap = u32::from(options.max_gap);

        // Groups in order of first appearance, which orders optional blocks.
        type Key = (Option<Arc<str>>, bool, Table);
        let mut groups: Vec<(Key, Vec<Span>)> = Vec::new();
        let mut rank: HashMap<Option<Arc<str>>, usize> = HashMap::new();
        for reg in self.registers() {
            let key = (reg.block.clone(), reg.optional, reg.table);
            let next = rank.len();
            rank.entry(reg.block.clone()).or_insert(next);
            let span = Span {
                start: reg.address,
                end: reg.end(),
            };
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, spans)) => spans.push(span),
                None => groups.push((key, vec![span])),
            }
        }

        let mut planned: Vec<(ReadRequest, Vec<Span>)> = Vec::new();
        for ((block, optional, table), mut spans) in groups {
            spans.sort();
            spans.dedup();
            let max = if table.is_bits() { max_bits } else { max_registers };
            for items in coalesce(&spans, max, gap) {
                let request = request_for(&items, table, optional, block.clone());
                planned.push((request, items));
            }
        }
        planned.sort_by_key(|(r, _)| {
            let block_rank = if r.optional {
                rank.get(&r.block).copied().unwrap_or(0)
            } else {
                0
            };
            (r.optional, block_rank, r.start, r.table)
        });
        let (requests, items): (Vec<ReadRequest>, Vec<Arc<[Span]>>) = planned
            .into_iter()
            .map(|(request, items)| (request, Arc::from(items)))
            .unzip();
        ReadPlan {
            model: self.clone(),
            options: options.clone(),
            requests: requests.into(),
            items: items.into(),
        }
    }

    /// Decodes the answers to any set of requests (a plan's, or the split
    /// requests of an adaptive plan): each value is taken from a successful
    /// response that covers all of its registers.
    pub fn decode<'a, I>(&self, results: I) -> Fields
    where
        I: IntoIterator<Item = (&'a ReadRequest, Option<Answer<'a>>)>,
    {
        let mut got: Vec<(Table, u32, u32, Answer<'a>)> = Vec::new();
        for (req, data) in results {
            let n = usize::from(req.count);
            let data = match data {
                // A reply of another length than asked is not trusted at all:
                // its words may not be where we think they are.
                Some(Answer::Words(w)) if !req.table.is_bits() && w.len() == n => Answer::Words(w),
                Some(Answer::Bits(b)) if req.table.is_bits() && b.len() >= n => Answer::Bits(&b[..n]),
                _ => continue,
            };
            got.push((req.table, u32::from(req.start), req.end(), data));
        }
        got.sort_by_key(|g| (g.0, g.1));

        let mut out = self.schema().new_fields();
        for (i, reg) in self.registers().iter().enumerate() {
            let (start, end) = (u32::from(reg.address), reg.end());
            let candidates = got.partition_point(|g| (g.0, g.1) <= (reg.table, start));
            let covering = got[..candidates]
                .iter()
                .rev()
                .take_while(|g| g.0 == reg.table)
                .find(|g| g.2 >= end);
            let Some((_, from, _, data)) = covering else {
                continue;
            };
            let offset = (start - from) as usize;
            let mut put = Ranked {
                fields: &mut out,
                ranks: self.ranks(i),
            };
            match data {
                Answer::Words(w) => decode_words(reg, &w[offset..offset + usize::from(reg.count)], &mut put),
                Answer::Bits(b) => decode_bit(reg, b[offset], &mut put),
            }
        }
        out
    }
}

/// A model's fields filled by the ranks worked out with its schema, not by
/// looking each name up.
struct Ranked<'a> {
    fields: &'a mut Fields,
    ranks: &'a [Option<usize>],
}

impl Put for Ranked<'_> {
    fn put(&mut self, reg: &super::model::Register, which: usize, value: Value) {
        match self.ranks.get(which).copied().flatten() {
            Some(rank) => {
                self.fields.insert_at(rank, value);
            }
            None => self.fields.put(reg, which, value),
        }
    }
}

#[cfg(test)]
mod tests;
