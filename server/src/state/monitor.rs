//! MONITOR lists: which nicks each client watches, and who watches each nick. Both sides are
//! kept so that a user coming or going costs one lookup, not a scan of every list.

use crate::state::chat::{fold, ClientId};
use rustc_hash::FxHashMap;
use std::collections::HashMap;

/// Every client's watch list and the reverse index. Nicks are kept folded.
#[derive(Debug, Default)]
pub struct Monitors {
    /// Keyed by slab index, which the server picks (see `Chat::users`).
    by_client: FxHashMap<ClientId, Vec<String>>,
    by_nick: HashMap<String, Vec<ClientId>>,
}

/// Adding would pass the per-client limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListFull;

impl Monitors {
    /// Adds `nick` to `id`'s list (no change if there already). At most `limit` nicks.
    pub fn add(&mut self, id: ClientId, nick: &str, limit: usize) -> Result<(), ListFull> {
        let key = fold(nick);
        let list = self.by_client.entry(id).or_default();
        if list.contains(&key) {
            return Ok(());
        }
        if list.len() >= limit {
            return Err(ListFull);
        }
        list.push(key.clone());
        self.by_nick.entry(key).or_default().push(id);
        Ok(())
    }

    pub fn remove(&mut self, id: ClientId, nick: &str) {
        let key = fold(nick);
        if let Some(list) = self.by_client.get_mut(&id) {
            list.retain(|n| *n != key);
        }
        self.unwatch(id, &key);
    }

    /// Empties `id`'s list (MONITOR C, or the client left).
    pub fn clear(&mut self, id: ClientId) {
        for key in self.by_client.remove(&id).unwrap_or_default() {
            self.unwatch(id, &key);
        }
    }

    fn unwatch(&mut self, id: ClientId, key: &str) {
        if let Some(watchers) = self.by_nick.get_mut(key) {
            watchers.retain(|&w| w != id);
            if watchers.is_empty() {
                self.by_nick.remove(key);
            }
        }
    }

    /// The nicks `id` watches (folded), in the order added.
    pub fn list(&self, id: ClientId) -> &[String] {
        self.by_client.get(&id).map_or(&[], Vec::as_slice)
    }

    /// Who watches `nick`.
    pub fn watchers(&self, nick: &str) -> &[ClientId] {
        self.by_nick.get(&fold(nick)).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_reverse_index_stay_in_step() {
        let mut m = Monitors::default();
        m.add(1, "Ann", 2).unwrap();
        m.add(1, "ann", 2).unwrap();
        m.add(1, "bob", 2).unwrap();
        assert_eq!(m.add(1, "cat", 2), Err(ListFull));
        m.add(2, "ANN", 2).unwrap();
        assert_eq!(m.list(1), ["ann", "bob"]);
        assert_eq!(m.watchers("ann"), [1, 2]);
        m.remove(1, "ANN");
        assert_eq!(m.watchers("Ann"), [2]);
        m.clear(2);
        assert!(m.watchers("ann").is_empty());
        assert!(m.list(2).is_empty());
        assert_eq!(m.watchers("bob"), [1]);
    }
}
