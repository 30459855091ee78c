//! A poll's values by field name, stored by position.
//!
//! Every poll of a model has the same few hundred field names, so a map keyed
//! by name (one node allocation per dozen fields, a string comparison per step)
//! is mostly overhead. [`Slots`] gives each name of a schema its rank in name
//! order once; [`Fields`] keeps the values in one vector at those ranks. A name
//! outside the slots (a field a transform adds) goes to a small sorted list
//! beside it. Iteration merges the two, so it yields names in sorted order,
//! exactly as a `BTreeMap` did: sinks' output does not depend on how a value
//! was stored.

use std::fmt;
use std::iter::Peekable;
use std::sync::{Arc, OnceLock};

use rustc_hash::FxHashMap;

use super::Value;

/// The field names of one schema, each with its rank in name order and its
/// position in the schema (the schema's one name index).
#[derive(Default, PartialEq)]
pub struct Slots {
    names: Box<[Arc<str>]>,
    /// Name → (rank in name order, position in the list it was made from).
    rank: FxHashMap<Arc<str>, (u32, u32)>,
}

impl Slots {
    /// Slots for these names, in their order; a name given twice keeps its
    /// last position.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a Arc<str>>) -> Self {
        let mut at: FxHashMap<Arc<str>, (u32, u32)> = FxHashMap::default();
        for (i, n) in names.into_iter().enumerate() {
            at.insert(n.clone(), (0, i as u32));
        }
        let mut sorted: Vec<Arc<str>> = at.keys().cloned().collect();
        sorted.sort_unstable();
        for (r, n) in sorted.iter().enumerate() {
            if let Some(e) = at.get_mut(n) {
                e.0 = r as u32;
            }
        }
        Slots {
            names: sorted.into_boxed_slice(),
            rank: at,
        }
    }

    /// The shared empty set: fields made outside any schema.
    pub fn empty() -> Arc<Slots> {
        static EMPTY: OnceLock<Arc<Slots>> = OnceLock::new();
        EMPTY.get_or_init(Arc::default).clone()
    }

    /// The name's position, if it has one.
    pub fn rank(&self, name: &str) -> Option<usize> {
        if self.names.is_empty() {
            return None;
        }
        self.rank.get(name).map(|&(r, _)| r as usize)
    }

    /// The name's position in the list the slots were made from.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.rank.get(name).map(|&(_, p)| p as usize)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The names in rank order: `names()[rank]`.
    pub fn names(&self) -> &[Arc<str>] {
        &self.names
    }
}

impl fmt::Debug for Slots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names.iter()).finish()
    }
}

/// Field name → value, for one poll. Behaves as a sorted map.
#[derive(Clone)]
pub struct Fields<V = Value> {
    slots: Arc<Slots>,
    /// Empty until the first value with a slot, then one entry per slot.
    values: Vec<Option<V>>,
    /// Values whose names have no slot, sorted by name, each with the number
    /// of slot names that sort before it: iteration merges by that number, not
    /// by comparing names.
    extra: Vec<Extra<V>>,
    len: usize,
}

#[derive(Clone)]
struct Extra<V> {
    after: u32,
    name: Arc<str>,
    value: V,
}

impl<V> Default for Fields<V> {
    fn default() -> Self {
        Fields::with_slots(Slots::empty())
    }
}

impl<V> Fields<V> {
    pub fn new() -> Self {
        Fields::default()
    }

    /// Empty fields that store the names of `slots` by position.
    pub fn with_slots(slots: Arc<Slots>) -> Self {
        Fields {
            slots,
            values: Vec::new(),
            extra: Vec::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The slots these values are stored by.
    pub fn slots(&self) -> &Arc<Slots> {
        &self.slots
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn extra_index(&self, name: &str) -> Result<usize, usize> {
        self.extra.binary_search_by(|e| (*e.name).cmp(name))
    }

    pub fn get(&self, name: &str) -> Option<&V> {
        match self.slots.rank(name) {
            Some(r) => self.values.get(r)?.as_ref(),
            None => self.extra_index(name).ok().map(|i| &self.extra[i].value),
        }
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut V> {
        match self.slots.rank(name) {
            Some(r) => self.values.get_mut(r)?.as_mut(),
            None => self.extra_index(name).ok().map(|i| &mut self.extra[i].value),
        }
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Where `name` sits in fields of these slots, for [`insert_at`](Self::insert_at).
    pub fn rank_of(&self, name: &str) -> Option<usize> {
        self.slots.rank(name)
    }

    /// Sets the value of the name at `rank`, as [`rank_of`](Self::rank_of)
    /// answered for fields of the same slots; returns the one it replaces.
    pub fn insert_at(&mut self, rank: usize, value: V) -> Option<V> {
        self.put(rank, value)
    }

    /// Sets a value, returning the one it replaces.
    pub fn insert(&mut self, name: Arc<str>, value: V) -> Option<V> {
        match self.slots.rank(&name) {
            Some(r) => self.put(r, value),
            None => self.insert_extra(name, value),
        }
    }

    /// [`insert`](Self::insert) for a caller that keeps its name: the name is
    /// cloned only when it has no slot.
    pub fn insert_ref(&mut self, name: &Arc<str>, value: V) -> Option<V> {
        match self.slots.rank(name) {
            Some(r) => self.put(r, value),
            None => self.insert_extra(name.clone(), value),
        }
    }

    fn put(&mut self, rank: usize, value: V) -> Option<V> {
        if self.values.is_empty() {
            self.values.resize_with(self.slots.len(), || None);
        }
        let old = self.values[rank].replace(value);
        self.len += usize::from(old.is_none());
        old
    }

    fn insert_extra(&mut self, name: Arc<str>, value: V) -> Option<V> {
        match self.extra_index(&name) {
            Ok(i) => Some(std::mem::replace(&mut self.extra[i].value, value)),
            Err(i) => {
                let after = self.slots.names.partition_point(|n| **n < *name) as u32;
                self.extra.insert(i, Extra { after, name, value });
                self.len += 1;
                None
            }
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<V> {
        let old = match self.slots.rank(name) {
            Some(r) => self.values.get_mut(r)?.take(),
            None => self.extra_index(name).ok().map(|i| self.extra.remove(i).value),
        };
        self.len -= usize::from(old.is_some());
        old
    }

    pub fn clear(&mut self) {
        self.values.clear();
        self.extra.clear();
        self.len = 0;
    }

    /// Keeps only the values `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&Arc<str>, &mut V) -> bool) {
        let names = &self.slots.names;
        for (i, slot) in self.values.iter_mut().enumerate() {
            if let Some(v) = slot {
                if !keep(&names[i], v) {
                    *slot = None;
                }
            }
        }
        self.extra.retain_mut(|e| keep(&e.name, &mut e.value));
        self.len = self.values.iter().filter(|v| v.is_some()).count() + self.extra.len();
    }

    /// Name and value pairs in name order.
    pub fn iter(&self) -> Iter<'_, V> {
        Iter(self.iter_ranked())
    }

    /// Name and value pairs in name order, each with its rank in
    /// [`slots`](Self::slots) (`None` for a name outside them): a consumer
    /// that keeps something per rank of a schema finds it without hashing the name.
    pub fn iter_ranked(&self) -> Ranked<'_, V> {
        let slotted = Slotted {
            values: self.values.iter(),
            names: self.slots.names.iter(),
            at: 0,
        };
        Ranked {
            slotted: slotted.peekable(),
            extra: self.extra.iter().peekable(),
            left: self.len,
        }
    }

    /// Names with mutable values, in name order.
    pub fn iter_mut(&mut self) -> IterMut<'_, V> {
        let slotted = SlottedMut {
            values: self.values.iter_mut(),
            names: self.slots.names.iter(),
            at: 0,
        };
        IterMut {
            slotted: slotted.peekable(),
            extra: self.extra.iter_mut().peekable(),
            left: self.len,
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &Arc<str>> + '_ {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> + '_ {
        self.iter_mut().map(|(_, v)| v)
    }
}

/// The values that have slots, with their names and slot numbers, in slot order.
struct Slotted<'a, V> {
    values: std::slice::Iter<'a, Option<V>>,
    names: std::slice::Iter<'a, Arc<str>>,
    at: u32,
}

impl<'a, V> Iterator for Slotted<'a, V> {
    type Item = (u32, &'a Arc<str>, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (v, n) = (self.values.next()?, self.names.next()?);
            self.at += 1;
            if let Some(v) = v {
                return Some((self.at - 1, n, v));
            }
        }
    }
}

struct SlottedMut<'a, V> {
    values: std::slice::IterMut<'a, Option<V>>,
    names: std::slice::Iter<'a, Arc<str>>,
    at: u32,
}

impl<'a, V> Iterator for SlottedMut<'a, V> {
    type Item = (u32, &'a Arc<str>, &'a mut V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (v, n) = (self.values.next()?, self.names.next()?);
            self.at += 1;
            if let Some(v) = v {
                return Some((self.at - 1, n, v));
            }
        }
    }
}

/// Which of two sorted runs yields next: the slotted value in slot `slot`
/// unless the extra one sorts before that slot's name (a name is never in both).
fn slotted_first(slot: Option<u32>, extra_after: Option<u32>) -> Option<bool> {
    match (slot, extra_after) {
        (None, None) => None,
        (Some(_), None) => Some(true),
        (None, Some(_)) => Some(false),
        (Some(slot), Some(after)) => Some(slot < after),
    }
}

pub struct Iter<'a, V = Value>(Ranked<'a, V>);

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (&'a Arc<str>, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(_, k, v)| (k, v))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<V> ExactSizeIterator for Iter<'_, V> {}

/// See [`Fields::iter_ranked`].
pub struct Ranked<'a, V = Value> {
    slotted: Peekable<Slotted<'a, V>>,
    extra: Peekable<std::slice::Iter<'a, Extra<V>>>,
    left: usize,
}

impl<'a, V> Iterator for Ranked<'a, V> {
    type Item = (Option<usize>, &'a Arc<str>, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        let first = slotted_first(self.slotted.peek().map(|p| p.0), self.extra.peek().map(|e| e.after))?;
        self.left -= 1;
        if first {
            self.slotted.next().map(|(r, k, v)| (Some(r as usize), k, v))
        } else {
            self.extra.next().map(|e| (None, &e.name, &e.value))
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<V> ExactSizeIterator for Ranked<'_, V> {}

pub struct IterMut<'a, V = Value> {
    slotted: Peekable<SlottedMut<'a, V>>,
    extra: Peekable<std::slice::IterMut<'a, Extra<V>>>,
    left: usize,
}

impl<'a, V> Iterator for IterMut<'a, V> {
    type Item = (&'a Arc<str>, &'a mut V);

    fn next(&mut self) -> Option<Self::Item> {
        let first = slotted_first(self.slotted.peek().map(|p| p.0), self.extra.peek().map(|e| e.after))?;
        self.left -= 1;
        if first {
            self.slotted.next().map(|(_, k, v)| (k, v))
        } else {
            self.extra.next().map(|e| (&e.name, &mut e.value))
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<V> ExactSizeIterator for IterMut<'_, V> {}

impl<'a, V> IntoIterator for &'a Fields<V> {
    type Item = (&'a Arc<str>, &'a V);
    type IntoIter = Iter<'a, V>;

    fn into_iter(self) -> Iter<'a, V> {
        self.iter()
    }
}

impl<'a, V> IntoIterator for &'a mut Fields<V> {
    type Item = (&'a Arc<str>, &'a mut V);
    type IntoIter = IterMut<'a, V>;

    fn into_iter(self) -> IterMut<'a, V> {
        self.iter_mut()
    }
}

impl<V> IntoIterator for Fields<V> {
    type Item = (Arc<str>, V);
    type IntoIter = std::vec::IntoIter<(Arc<str>, V)>;

    fn into_iter(self) -> Self::IntoIter {
        let names = self.slots.names.iter().cloned();
        let mut all: Vec<(Arc<str>, V)> = names.zip(self.values).filter_map(|(n, v)| Some((n, v?))).collect();
        if !self.extra.is_empty() {
            all.extend(self.extra.into_iter().map(|e| (e.name, e.value)));
            all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        all.into_iter()
    }
}

impl<V> Extend<(Arc<str>, V)> for Fields<V> {
    fn extend<I: IntoIterator<Item = (Arc<str>, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<V> FromIterator<(Arc<str>, V)> for Fields<V> {
    fn from_iter<I: IntoIterator<Item = (Arc<str>, V)>>(iter: I) -> Self {
        let mut f = Fields::new();
        f.extend(iter);
        f
    }
}

impl<V, const N: usize> From<[(Arc<str>, V); N]> for Fields<V> {
    fn from(pairs: [(Arc<str>, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl<V> std::ops::Index<&str> for Fields<V> {
    type Output = V;

    fn index(&self, name: &str) -> &V {
        self.get(name).unwrap_or_else(|| panic!("no field named {name:?}"))
    }
}

impl<V: PartialEq> PartialEq for Fields<V> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

/// Same names and values as a map: lets tests state what they expect as one.
impl<V: PartialEq> PartialEq<std::collections::BTreeMap<Arc<str>, V>> for Fields<V> {
    fn eq(&self, other: &std::collections::BTreeMap<Arc<str>, V>) -> bool {
        self.len == other.len() && self.iter().eq(other.iter())
    }
}

impl<V: serde::Serialize> serde::Serialize for Fields<V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<V: fmt::Debug> fmt::Debug for Fields<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A tiny seeded generator (xorshift), so a failure names its seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Random inserts, removals, in-place changes and retains on `Fields` and
    /// on a `BTreeMap` (the reference model) must leave both with the same
    /// contents, in the same order, at every step.
    #[test]
    fn behaves_as_a_sorted_map() {
        let names: Vec<Arc<str>> = (0..40).map(|i| Arc::from(format!("f{:02}", (i * 7) % 40))).collect();
        for seed in 1..=200u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            // Slots for a random part of the names; the rest land beside them.
            let slotted: Vec<&Arc<str>> = names.iter().filter(|_| rng.below(3) > 0).collect();
            let mut fields = Fields::with_slots(Arc::new(Slots::new(slotted)));
            let mut model: BTreeMap<Arc<str>, Value> = BTreeMap::new();
            for step in 0..120 {
                let name = &names[rng.below(names.len())];
                let value = Value::Int(rng.below(1000) as i64);
                match rng.below(6) {
                    0 | 1 => assert_eq!(
                        fields.insert(name.clone(), value.clone()),
                        model.insert(name.clone(), value)
                    ),
                    2 => assert_eq!(fields.remove(name), model.remove(name)),
                    3 => {
                        if let (Some(a), Some(b)) = (fields.get_mut(name), model.get_mut(name)) {
                            *a = Value::Float(step as f64);
                            *b = Value::Float(step as f64);
                        }
                    }
                    4 => {
                        let cut = rng.below(1000) as i64;
                        let keep = |v: &Value| v.as_i64().is_none_or(|i| i < cut);
                        fields.retain(|_, v| keep(v));
                        model.retain(|_, v| keep(v));
                    }
                    _ => {
                        for (_, v) in fields.iter_mut() {
                            if let Value::Int(i) = v {
                                *i += 1;
                            }
                        }
                        for v in model.values_mut() {
                            if let Value::Int(i) = v {
                                *i += 1;
                            }
                        }
                    }
                }
                let got: Vec<_> = fields.iter().collect();
                let want: Vec<_> = model.iter().collect();
                assert_eq!(got, want, "seed {seed}, step {step}");
                assert_eq!(fields.len(), model.len(), "seed {seed}, step {step}");
                assert_eq!(fields.iter().len(), model.len());
                for (rank, name, _) in fields.iter_ranked() {
                    assert_eq!(rank, fields.slots().rank(name), "seed {seed}, step {step}, {name}");
                }
                for n in &names {
                    assert_eq!(fields.get(n), model.get(n), "seed {seed}, step {step}, {n}");
                }
            }
        }
    }

    #[test]
    fn equal_contents_are_equal_however_stored() {
        let a: Arc<str> = "a".into();
        let b: Arc<str> = "b".into();
        let mut slotted = Fields::with_slots(Arc::new(Slots::new([&a])));
        slotted.insert(b.clone(), Value::Int(2));
        slotted.insert(a.clone(), Value::Int(1));
        let plain = Fields::from([(a, Value::Int(1)), (b, Value::Int(2))]);
        assert_eq!(slotted, plain);
        assert_eq!(format!("{slotted:?}"), r#"{"a": Int(1), "b": Int(2)}"#);
    }
}
