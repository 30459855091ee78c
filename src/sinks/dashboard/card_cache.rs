//! The last rendered card of each pump, kept with the state it was rendered
//! from, so the overview renders a card at most once per second and pump.
//! The views decide the key and fill the cache; it only stores.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What a rendered card depends on besides the templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardKey {
    pub(super) generation: u64,
    pub(super) settings: u64,
    pub(super) second: u32,
    pub(super) offline: u64,
}

/// A rendered card and the key it was rendered for.
type CachedCard = (CardKey, Arc<str>);

/// The last rendered card of each pump.
#[derive(Default)]
pub struct CardCache {
    cards: Mutex<HashMap<Arc<str>, CachedCard>>,
}

impl CardCache {
    pub(super) fn get(&self, id: &Arc<str>, key: &CardKey) -> Option<Arc<str>> {
        let cards = self.cards.lock().unwrap_or_else(|p| p.into_inner());
        cards.get(id).filter(|(k, _)| k == key).map(|(_, html)| html.clone())
    }

    pub(super) fn put(&self, id: &Arc<str>, key: CardKey, html: Arc<str>) {
        let mut cards = self.cards.lock().unwrap_or_else(|p| p.into_inner());
        cards.insert(id.clone(), (key, html));
    }
}
