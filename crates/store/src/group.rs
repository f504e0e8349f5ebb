//! The rule both backends follow when they commit a group of deliveries together (group
//! commit): the first delivery of an idempotency key (in its portal) is the group's candidate
//! for that key and the later ones are duplicates of it; a candidate the database already
//! held is a duplicate of the stored row. The backends write the candidates with a few
//! multi-row statements and hand the ids back here to answer every delivery in order.

use std::collections::HashMap;

use crate::body::Packed;
use crate::{Ingested, NewDelivery, Result, StoreError};

/// A delivery's identity in the inbox: (portal, idempotency key).
pub(crate) type Key = (String, String);

fn key_of(d: &NewDelivery) -> Key {
    (d.portal.as_str().to_string(), d.idempotency_key.as_str().to_string())
}

/// A group of deliveries on its way to one transaction.
pub(crate) struct Group<'a> {
    batch: &'a [&'a Packed],
    /// Each delivery's key, made once.
    keys: Vec<Key>,
    /// For each delivery, the index of its key's first delivery in the group.
    first: Vec<usize>,
}

/// Deliveries stored by this group that need a job: those that coalesce with their call's
/// other updates, then the plain ones, each with its new inbox id.
pub(crate) struct Queued<'a> {
    pub coalescing: Vec<(&'a Packed, i64)>,
    pub jobs: Vec<(&'a Packed, i64)>,
}

impl<'a> Group<'a> {
    pub fn new(batch: &'a [&'a Packed]) -> Group<'a> {
        let keys: Vec<Key> = batch.iter().map(|d| key_of(d)).collect();
        let mut seen: HashMap<&Key, usize> = HashMap::with_capacity(batch.len());
        let first = keys.iter().enumerate().map(|(i, k)| *seen.entry(k).or_insert(i)).collect();
        Group { batch, keys, first }
    }

    /// The indexes of the first delivery of each key, in arrival order.
    fn firsts(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.batch.len()).filter(|&i| self.first[i] == i)
    }

    /// The first delivery of each key, in arrival order: the rows to insert.
    pub fn candidates(&self) -> Vec<&'a Packed> {
        self.firsts().map(|i| self.batch[i]).collect()
    }

    /// The candidates the insert stored (`new_ids` holds their ids) that need a job.
    pub fn queued(&self, new_ids: &HashMap<Key, i64>) -> Queued<'a> {
        let (jobs, coalescing) = self
            .firsts()
            .filter(|&i| self.batch[i].job_kind.is_some())
            .filter_map(|i| new_ids.get(&self.keys[i]).map(|id| (self.batch[i], *id)))
            .partition(|(d, _)| plain_job(d).is_some());
        Queued { coalescing, jobs }
    }

    /// Keys the database held before this group: their rows must be looked up.
    pub fn seen_before(&self, new_ids: &HashMap<Key, i64>) -> Vec<&Key> {
        self.firsts().map(|i| &self.keys[i]).filter(|k| !new_ids.contains_key(*k)).collect()
    }

    /// Every delivery's answer, in the group's order.
    pub fn answers(&self, new_ids: &HashMap<Key, i64>, old_ids: &HashMap<Key, i64>) -> Vec<Result<Ingested>> {
        self.keys
            .iter()
            .enumerate()
            .map(|(i, key)| match new_ids.get(key) {
                Some(id) => Ok(Ingested { inbox_id: *id, duplicate: self.first[i] != i }),
                None => old_ids
                    .get(key)
                    .map(|id| Ingested { inbox_id: *id, duplicate: true })
                    .ok_or(StoreError::Database(sqlx::Error::RowNotFound)),
            })
            .collect()
    }
}

/// The job a delivery gets as soon as it is stored, or `None` when it needs none or coalesces
/// with its call's other updates (those are enqueued one by one).
pub(crate) fn plain_job(d: &NewDelivery) -> Option<&'static str> {
    d.job_kind.filter(|_| d.coalesce.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(portal: &str, key: &str) -> Packed {
        Packed::new(crate::test_delivery(portal, key))
    }

    #[test]
    fn the_first_delivery_of_a_key_is_stored_and_the_rest_answer_as_its_duplicates() {
        let (a1, b, a2, other_portal_a) =
            (delivery("p", "a"), delivery("p", "b"), delivery("p", "a"), delivery("q", "a"));
        let batch = [&a1, &b, &a2, &other_portal_a];
        let group = Group::new(&batch);
        let keys: Vec<Key> = group.candidates().into_iter().map(|d| key_of(d)).collect();
        assert_eq!(keys, vec![key_of(&a1), key_of(&b), key_of(&other_portal_a)]);

        // "b" was stored before this group: the insert returned no id for it.
        let new_ids = HashMap::from([(key_of(&a1), 10), (key_of(&other_portal_a), 11)]);
        assert_eq!(group.seen_before(&new_ids), vec![&key_of(&b)]);
        assert_eq!(group.queued(&new_ids).jobs.iter().map(|(_, id)| *id).collect::<Vec<_>>(), vec![10, 11]);
        let old_ids = HashMap::from([(key_of(&b), 3)]);
        let answers: Vec<Ingested> = group.answers(&new_ids, &old_ids).into_iter().map(|a| a.unwrap()).collect();
        assert_eq!(
            answers,
            vec![
                Ingested { inbox_id: 10, duplicate: false },
                Ingested { inbox_id: 3, duplicate: true },
                Ingested { inbox_id: 10, duplicate: true },
                Ingested { inbox_id: 11, duplicate: false },
            ]
        );
    }

    #[test]
    fn a_key_neither_stored_nor_found_is_an_error_for_that_delivery_only() {
        let (a, b) = (delivery("p", "a"), delivery("p", "b"));
        let batch = [&a, &b];
        let group = Group::new(&batch);
        let answers = group.answers(&HashMap::from([(key_of(&a), 1)]), &HashMap::new());
        assert!(answers[0].is_ok());
        assert!(matches!(answers[1], Err(StoreError::Database(sqlx::Error::RowNotFound))));
    }
}
