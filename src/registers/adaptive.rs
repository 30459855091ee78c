//! A read plan that learns which requests a device refuses.
//!
//! Devices answer exception 02 (illegal data address) for reads they do not
//! like: a start on an address they do not implement, a span across a hole,
//! a whole block that is not fitted. [`PlanState`] reacts without any I/O of
//! its own, so it is tested with explicit `Instant`s:
//! - a refused coalesced request is split in two at a value boundary (each
//!   half starting on a defined address); halves are split again until the
//!   refusing value is alone, and that one is skipped;
//! - skipped requests, and split requests as a whole, are tried again after
//!   `reprobe_after` (a transient refusal must not cost the plan forever);
//! - a refusal in an optional block drops the whole block until its re-probe.
//!
//! A poll asks [`PlanState::requests`], sends them, reports each outcome with
//! [`PlanState::record`], then sends [`PlanState::follow_ups`] (the halves of
//! anything split during this poll) until there are none, and decodes all
//! answers together with [`PlanState::decode`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event::Value;

use super::plan::{request_for, RawData, ReadPlan, ReadRequest, Span};

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Modbus exception 02: the device does not serve (part of) this range.
    IllegalAddress,
    /// Anything else (timeout, busy, broken link): says nothing about the plan.
    Failed,
}

/// A change of the plan worth a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A refused request was split; the parts are among the follow-ups.
    Split {
        request: ReadRequest,
        into: Vec<ReadRequest>,
    },
    /// A request for a single value was refused; it is skipped until `until`
    /// (`None`: never, when the re-probe interval does not fit an `Instant`).
    Skipped {
        request: ReadRequest,
        until: Option<Instant>,
    },
    /// An optional block was refused and is left out until `until`.
    BlockDropped { block: Arc<str>, until: Option<Instant> },
    /// A skipped or split request was answered whole again.
    Restored { request: ReadRequest },
    /// A dropped optional block answered its re-probe.
    BlockRestored { block: Arc<str> },
}

#[derive(Debug, Clone)]
enum State {
    Whole,
    Refused {
        retry_at: Option<Instant>,
    },
    Split {
        children: Vec<Node>,
        retry_whole_at: Option<Instant>,
    },
}

#[derive(Debug, Clone)]
struct Node {
    request: ReadRequest,
    items: Vec<Span>,
    state: State,
}

fn due(at: Option<Instant>, now: Instant) -> bool {
    at.is_some_and(|t| now >= t)
}

impl Node {
    fn new(request: ReadRequest, items: Vec<Span>) -> Node {
        Node {
            request,
            items,
            state: State::Whole,
        }
    }

    fn collect(&self, now: Instant, out: &mut Vec<ReadRequest>) {
        match &self.state {
            State::Whole => out.push(self.request.clone()),
            State::Refused { retry_at } => {
                if due(*retry_at, now) {
                    out.push(self.request.clone());
                }
            }
            State::Split {
                children,
                retry_whole_at,
            } => {
                if due(*retry_whole_at, now) {
                    out.push(self.request.clone());
                } else {
                    children.iter().for_each(|c| c.collect(now, out));
                }
            }
        }
    }

    fn find_mut(&mut self, request: &ReadRequest) -> Option<&mut Node> {
        if self.request == *request {
            return Some(self);
        }
        match &mut self.state {
            State::Split { children, .. } => children.iter_mut().find_map(|c| c.find_mut(request)),
            _ => None,
        }
    }

    fn refused_leaves(&self, out: &mut Vec<ReadRequest>) {
        match &self.state {
            State::Whole => {}
            State::Refused { .. } => out.push(self.request.clone()),
            State::Split { children, .. } => children.iter().for_each(|c| c.refused_leaves(out)),
        }
    }

    /// Exception 02 on this node's request.
    fn refuse(&mut self, now: Instant, later: Option<Instant>, follow_ups: &mut Vec<ReadRequest>) -> Option<Change> {
        match &mut self.state {
            State::Whole if self.items.len() >= 2 => {
                let (left, right) = self.items.split_at(self.items.len() / 2);
                let r = &self.request;
                let children: Vec<Node> = [left, right]
                    .into_iter()
                    .map(|items| Node::new(request_for(items, r.table, r.optional, r.block.clone()), items.to_vec()))
                    .collect();
                let into: Vec<ReadRequest> = children.iter().map(|c| c.request.clone()).collect();
                follow_ups.extend(into.iter().cloned());
                self.state = State::Split {
                    children,
                    retry_whole_at: later,
                };
                Some(Change::Split {
                    request: self.request.clone(),
                    into,
                })
            }
            State::Whole => {
                self.state = State::Refused { retry_at: later };
                Some(Change::Skipped {
                    request: self.request.clone(),
                    until: later,
                })
            }
            State::Refused { retry_at } => {
                *retry_at = later;
                None
            }
            State::Split {
                children,
                retry_whole_at,
            } => {
                // The whole was re-probed and refused again: back to the parts.
                *retry_whole_at = later;
                children.iter().for_each(|c| c.collect(now, follow_ups));
                None
            }
        }
    }

    fn answered(&mut self) -> Option<Change> {
        match self.state {
            State::Whole => None,
            State::Refused { .. } | State::Split { .. } => {
                self.state = State::Whole;
                Some(Change::Restored {
                    request: self.request.clone(),
                })
            }
        }
    }
}

/// A [`ReadPlan`] plus what the device has refused so far.
#[derive(Debug, Clone)]
pub struct PlanState {
    plan: ReadPlan,
    roots: Vec<Node>,
    /// Dropped optional blocks and when to re-probe them.
    dropped: HashMap<Arc<str>, Option<Instant>>,
    follow_ups: Vec<ReadRequest>,
    reprobe_after: Duration,
}

impl PlanState {
    pub fn new(plan: ReadPlan) -> PlanState {
        let roots = plan
            .requests()
            .iter()
            .zip(plan.items())
            .map(|(r, items)| Node::new(r.clone(), items.clone()))
            .collect();
        let reprobe_after = plan.options().reprobe_after;
        PlanState {
            plan,
            roots,
            dropped: HashMap::new(),
            follow_ups: Vec::new(),
            reprobe_after,
        }
    }

    pub fn plan(&self) -> &ReadPlan {
        &self.plan
    }

    /// The requests to send in the poll starting at `now`.
    pub fn requests(&mut self, now: Instant) -> Vec<ReadRequest> {
        self.follow_ups.clear();
        let mut out = Vec::new();
        for root in &self.roots {
            if let Some(block) = root.request.block.as_ref().filter(|_| root.request.optional) {
                if let Some(retry_at) = self.dropped.get(block) {
                    if !due(*retry_at, now) {
                        continue;
                    }
                }
            }
            root.collect(now, &mut out);
        }
        out
    }

    /// Takes the outcome of one request sent in this poll.
    pub fn record(&mut self, request: &ReadRequest, outcome: Outcome, now: Instant) -> Option<Change> {
        let later = now.checked_add(self.reprobe_after);
        if request.optional {
            let block = request.block.clone()?;
            return match outcome {
                Outcome::Failed => None,
                Outcome::Ok => match self.dropped.get(&block) {
                    // Answered a re-probe; a refusal earlier in this same poll
                    // (retry time in the future) keeps the block dropped.
                    Some(retry_at) if due(*retry_at, now) => {
                        self.dropped.remove(&block);
                        Some(Change::BlockRestored { block })
                    }
                    _ => None,
                },
                Outcome::IllegalAddress => {
                    let newly = self.dropped.get(&block).is_none_or(|r| due(*r, now));
                    self.dropped.insert(block.clone(), later);
                    newly.then_some(Change::BlockDropped { block, until: later })
                }
            };
        }
        let node = self.roots.iter_mut().find_map(|n| n.find_mut(request))?;
        match outcome {
            Outcome::Failed => None,
            Outcome::Ok => node.answered(),
            Outcome::IllegalAddress => node.refuse(now, later, &mut self.follow_ups),
        }
    }

    /// Requests made necessary by refusals recorded since the last call (the
    /// halves of split requests), to send in the same poll.
    pub fn follow_ups(&mut self) -> Vec<ReadRequest> {
        std::mem::take(&mut self.follow_ups)
    }

    /// Decodes everything a poll received, whatever mix of whole and split
    /// requests it was.
    pub fn decode(&self, results: &[(ReadRequest, Option<RawData>)]) -> BTreeMap<Arc<str>, Value> {
        self.plan.model().decode(results.iter().map(|(r, d)| (r, d.as_ref())))
    }

    /// Requests for single values the device refused, skipped until their re-probe.
    pub fn skipped(&self) -> Vec<ReadRequest> {
        let mut out = Vec::new();
        self.roots.iter().for_each(|r| r.refused_leaves(&mut out));
        out
    }

    /// Optional blocks currently left out.
    pub fn dropped_blocks(&self) -> Vec<Arc<str>> {
        let mut out: Vec<Arc<str>> = self.dropped.keys().cloned().collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registers::{PlanOptions, RegisterMap};

    const MAP: &str = "
models:
  m:
    not_available: [0x8000]
    blocks:
      vent: {optional: true}
    registers:
      - {name: a, address: 100, register_type: input}
      - {name: b, address: 101, register_type: input}
      - {name: c, address: 102, register_type: input}
      - {name: d, address: 103, register_type: input}
      - {name: e, address: 104, register_type: input}
      - {name: v1, address: 819, register_type: input, block: vent}
      - {name: v2, address: 820, register_type: input, block: vent}
";

    fn state() -> PlanState {
        let map = RegisterMap::parse("m.yml", MAP).unwrap();
        let model = map.model("m").unwrap().clone();
        PlanState::new(model.plan(&PlanOptions::default()))
    }

    fn req(start: u16, count: u16) -> ReadRequest {
        ReadRequest {
            table: crate::registers::Table::InputRegisters,
            start,
            count,
            optional: false,
            block: None,
        }
    }

    /// A device that refuses any read touching address 102 and any read of the vent block.
    fn answer(r: &ReadRequest) -> (Outcome, Option<RawData>) {
        let refuses = (r.start..r.start + r.count).contains(&102) || r.start >= 819;
        if refuses {
            (Outcome::IllegalAddress, None)
        } else {
            let words = (r.start..r.start + r.count).collect();
            (Outcome::Ok, Some(RawData::Words(words)))
        }
    }

    /// One poll the way a source runs it; returns the decoded fields.
    fn poll(s: &mut PlanState, now: Instant, sent: &mut Vec<ReadRequest>) -> BTreeMap<Arc<str>, Value> {
        let mut results = Vec::new();
        let mut batch = s.requests(now);
        while !batch.is_empty() {
            for r in batch {
                let (outcome, data) = answer(&r);
                s.record(&r, outcome, now);
                sent.push(r.clone());
                results.push((r, data));
            }
            batch = s.follow_ups();
        }
        s.decode(&results)
    }

    #[test]
    fn exception_02_split_isolates_the_refusing_field() {
        let mut s = state();
        let t0 = Instant::now();
        let mut sent = Vec::new();
        let fields = poll(&mut s, t0, &mut sent);
        // 100..104 refused → 100..101 ok + 102..104 refused → 102 refused + 103..104 ok.
        assert_eq!(sent[0], req(100, 5));
        assert!(sent.contains(&req(100, 2)));
        assert!(sent.contains(&req(102, 3)));
        assert!(sent.contains(&req(102, 1)));
        assert!(sent.contains(&req(103, 2)));
        assert_eq!(s.skipped(), vec![req(102, 1)]);
        for (name, value) in [("a", 100), ("b", 101), ("d", 103), ("e", 104)] {
            assert_eq!(fields.get(name), Some(&Value::Int(value)), "{name}");
        }
        assert_eq!(fields.get("c"), None);

        // The next poll sends only the parts that answer.
        let mut sent = Vec::new();
        let fields = poll(&mut s, t0 + Duration::from_secs(10), &mut sent);
        assert_eq!(sent, vec![req(100, 2), req(103, 2)]);
        assert_eq!(fields.len(), 4);
    }

    #[test]
    fn refused_parts_are_reprobed_after_the_interval_and_restored_when_answered() {
        let mut s = state();
        let t0 = Instant::now();
        poll(&mut s, t0, &mut Vec::new());
        let hour = Duration::from_secs(3600);
        // At the re-probe the whole request is tried first; refused again, the parts follow.
        let mut sent = Vec::new();
        poll(&mut s, t0 + hour, &mut sent);
        assert_eq!(sent[0], req(100, 5));
        assert!(sent.contains(&req(100, 2)));
        // Now the device serves everything: the whole request is restored at its next re-probe.
        let mut s2 = s.clone();
        let whole = req(100, 5);
        s2.requests(t0 + 2 * hour);
        assert_eq!(
            s2.record(&whole, Outcome::Ok, t0 + 2 * hour),
            Some(Change::Restored { request: whole.clone() })
        );
        assert!(s2.skipped().is_empty());
        assert_eq!(s2.requests(t0 + 2 * hour + Duration::from_secs(10))[0], whole);
    }

    #[test]
    fn optional_block_dropped_and_reprobed_after_the_interval() {
        let mut s = state();
        let t0 = Instant::now();
        let vent = s.requests(t0).into_iter().find(|r| r.optional).unwrap();
        assert_eq!((vent.start, vent.count), (819, 2));
        let change = s.record(&vent, Outcome::IllegalAddress, t0);
        assert!(matches!(change, Some(Change::BlockDropped { ref block, .. }) if &**block == "vent"));
        assert!(s.follow_ups().is_empty(), "optional blocks are not split");
        assert_eq!(s.dropped_blocks(), vec![Arc::from("vent")]);
        let later = t0 + Duration::from_secs(1800);
        assert!(s.requests(later).iter().all(|r| !r.optional));
        let reprobe = t0 + Duration::from_secs(3600);
        assert!(s.requests(reprobe).contains(&vent));
        assert_eq!(
            s.record(&vent, Outcome::Ok, reprobe),
            Some(Change::BlockRestored { block: "vent".into() })
        );
        assert!(s.dropped_blocks().is_empty());
    }

    #[test]
    fn other_failures_change_nothing() {
        let mut s = state();
        let t0 = Instant::now();
        let first = s.requests(t0);
        for r in &first {
            assert_eq!(s.record(r, Outcome::Failed, t0), None);
        }
        assert!(s.follow_ups().is_empty());
        assert_eq!(s.requests(t0), first);
    }

    #[test]
    fn unknown_requests_are_ignored() {
        let mut s = state();
        assert_eq!(s.record(&req(7, 1), Outcome::IllegalAddress, Instant::now()), None);
    }
}
