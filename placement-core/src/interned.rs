//! Reference-counted interning: a value gets a small integer id while something uses it, and both are
//! freed when the last user lets go (the id is then reused). The counting index keys its tables by
//! these ids (label sets of pending pods, revisions, workloads); counting the users keeps the tables
//! as large as what the cluster holds now, not everything it ever held.

use rustc_hash::FxHashMap as HashMap;
use std::borrow::Borrow;
use std::hash::Hash;

/// Values with ids, each with the number of its users.
#[derive(Clone, Debug)]
pub(crate) struct Interned<K> {
    ids: HashMap<K, u32>,
    /// `(value, users)` by id; `None` for a free id.
    entries: Vec<Option<(K, u32)>>,
    free: Vec<u32>,
}

impl<K> Default for Interned<K> {
    fn default() -> Self {
        Interned { ids: HashMap::default(), entries: Vec::new(), free: Vec::new() }
    }
}

impl<K: Hash + Eq + Clone> Interned<K> {
    /// The id of `value`, adding one user (and the value, if it had none).
    pub fn acquire(&mut self, value: &K) -> u32 {
        if let Some(&id) = self.ids.get(value) {
            if let Some((_, users)) = &mut self.entries[id as usize] {
                *users += 1;
            }
            return id;
        }
        let entry = Some((value.clone(), 1));
        let id = match self.free.pop() {
            Some(id) => {
                self.entries[id as usize] = entry;
                id
            }
            None => {
                self.entries.push(entry);
                (self.entries.len() - 1) as u32
            }
        };
        self.ids.insert(value.clone(), id);
        id
    }

    /// Drops one user of `id`; the last one frees the value and the id. Returns whether it was freed.
    pub fn release(&mut self, id: u32) -> bool {
        let Some(Some((_, users))) = self.entries.get_mut(id as usize) else { return false };
        *users -= 1;
        if *users > 0 {
            return false;
        }
        if let Some((value, _)) = self.entries[id as usize].take() {
            self.ids.remove(&value);
        }
        self.free.push(id);
        true
    }

    /// The id of `value`, if something uses it.
    pub fn id<Q: Hash + Eq + ?Sized>(&self, value: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
    {
        self.ids.get(value).copied()
    }

    /// The value of a used `id`.
    pub fn get(&self, id: u32) -> Option<&K> {
        self.entries.get(id as usize)?.as_ref().map(|(value, _)| value)
    }

    /// Values in use.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_live_while_used_and_are_reused_after() {
        let mut i = Interned::<String>::default();
        let a = i.acquire(&"a".to_string());
        assert_eq!(i.acquire(&"a".to_string()), a, "same value, same id");
        let b = i.acquire(&"b".to_string());
        assert_ne!(a, b);
        assert!(!i.release(a), "one user left");
        assert_eq!(i.get(a).map(String::as_str), Some("a"));
        assert!(i.release(a), "the last user frees it");
        assert_eq!((i.id(&"a".to_string()), i.get(a), i.len()), (None, None, 1));
        assert!(!i.release(a), "a free id is not released twice");
        let c = i.acquire(&"c".to_string());
        assert_eq!(c, a, "a freed id is reused");
        assert_eq!(i.get(b).map(String::as_str), Some("b"));
    }
}
