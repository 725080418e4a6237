//! One watched kind, kept as the values NMI reads, with a secondary index for O(1) lookups.
//!
//! Fed by a watcher's events: `Init` starts a new listing that replaces everything at
//! `InitDone` (so objects deleted while the watch was down disappear), `Apply`/`Delete` change
//! one object.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::Arc;

/// An object's `namespace/name` (cluster-scoped objects have an empty namespace).
pub type ObjectKey = (String, String);

/// The values of one kind by object, and the objects by index key.
pub struct Store<V, I> {
    objects: HashMap<ObjectKey, Arc<V>>,
    index: HashMap<I, BTreeSet<ObjectKey>>,
    index_of: fn(&V) -> Vec<I>,
    listing: Option<HashMap<ObjectKey, Arc<V>>>,
    synced: bool,
}

impl<V, I: Hash + Eq + Clone> Store<V, I> {
    pub fn new(index_of: fn(&V) -> Vec<I>) -> Self {
        Self {
            objects: HashMap::new(),
            index: HashMap::new(),
            index_of,
            listing: None,
            synced: false,
        }
    }

    /// Whether a first complete listing has been received.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// A relisting starts: objects are collected apart until [`Store::finish_listing`].
    pub fn start_listing(&mut self) {
        self.listing = Some(HashMap::new());
    }

    pub fn listed(&mut self, key: ObjectKey, value: V) {
        self.listing
            .get_or_insert_with(HashMap::new)
            .insert(key, Arc::new(value));
    }

    /// The listing is complete: it replaces every object.
    pub fn finish_listing(&mut self) {
        let listed = self.listing.take().unwrap_or_default();
        self.objects.clear();
        self.index.clear();
        for (key, value) in listed {
            self.insert(key, value);
        }
        self.synced = true;
    }

    pub fn apply(&mut self, key: ObjectKey, value: V) {
        self.remove(&key);
        self.insert(key, Arc::new(value));
    }

    pub fn remove(&mut self, key: &ObjectKey) {
        let Some(old) = self.objects.remove(key) else {
            return;
        };
        for index_key in (self.index_of)(&old) {
            if let Some(keys) = self.index.get_mut(&index_key) {
                keys.remove(key);
                if keys.is_empty() {
                    self.index.remove(&index_key);
                }
            }
        }
    }

    fn insert(&mut self, key: ObjectKey, value: Arc<V>) {
        for index_key in (self.index_of)(&value) {
            self.index.entry(index_key).or_default().insert(key.clone());
        }
        self.objects.insert(key, value);
    }

    pub fn get(&self, key: &ObjectKey) -> Option<Arc<V>> {
        self.objects.get(key).cloned()
    }

    /// The values filed under `index_key`, in object-key order.
    pub fn lookup(&self, index_key: &I) -> Vec<Arc<V>> {
        self.filed_under(index_key).cloned().collect()
    }

    /// The keys of the objects filed under `index_key`, in order.
    pub fn keys_under(&self, index_key: &I) -> Vec<ObjectKey> {
        self.index
            .get(index_key)
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// [`Store::lookup`] without collecting: the request path reads the usual single value
    /// in place.
    pub fn filed_under(&self, index_key: &I) -> impl Iterator<Item = &Arc<V>> {
        self.index
            .get(index_key)
            .into_iter()
            .flatten()
            .filter_map(|key| self.objects.get(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ("ns".into(), name.into())
    }

    /// Values are (name, bucket) pairs indexed by bucket.
    fn store() -> Store<(String, u8), u8> {
        Store::new(|value| vec![value.1])
    }

    #[test]
    fn updates_move_an_object_between_index_keys() {
        let mut s = store();
        s.apply(key("a"), ("a".into(), 1));
        s.apply(key("b"), ("b".into(), 1));
        assert_eq!(s.lookup(&1).len(), 2);
        s.apply(key("a"), ("a".into(), 2));
        assert_eq!(s.lookup(&1).len(), 1);
        assert_eq!(s.lookup(&2)[0].0, "a");
        s.remove(&key("b"));
        assert!(s.lookup(&1).is_empty());
        assert!(s.get(&key("a")).is_some() && s.get(&key("b")).is_none());
        s.remove(&key("missing"));
    }

    #[test]
    fn a_listing_replaces_everything_when_done() {
        let mut s = store();
        s.apply(key("gone"), ("gone".into(), 1));
        assert!(!s.is_synced());
        s.start_listing();
        s.listed(key("new"), ("new".into(), 1));
        // Until the listing is complete, the old state is served.
        assert_eq!(s.lookup(&1)[0].0, "gone");
        s.finish_listing();
        assert!(s.is_synced());
        let names: Vec<String> = s.lookup(&1).iter().map(|v| v.0.clone()).collect();
        assert_eq!(names, ["new"]);
        assert!(s.get(&key("gone")).is_none());
    }
}
