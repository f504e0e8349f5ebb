//! Which contacts are one person: the grouping rules of the duplicate sweep, pure.
//!
//! Contacts are linked by the same number in any phone property, in any format (normalised to
//! E.164 as the sync normalises it, national numbers in the default region), or the same email
//! (primary or additional, case-insensitive); links are transitive, so A and B sharing a number
//! and B and C an email make one group. The survivor is the oldest contact (create date, then
//! lowest id).
//!
//! A number alone is weak evidence: an office or a household shares one. A group whose contacts
//! are not all name-compatible (first and last names, normalised; a missing name or an initial
//! is compatible) is merged only as far as emails hold it together; what only a number joins
//! is reported as a shared number, unless shared numbers are to be merged too.

use std::collections::{BTreeMap, HashMap};

use crate::{DefaultRegion, Email, PhoneE164};

/// A contact as the sweep reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: u64,
    pub created_ms: i64,
    /// Every email it has (primary and additional), as stored.
    pub emails: Vec<String>,
    /// Every number it has (`phone`, `mobilephone`, callbridge's E.164 property), as stored.
    pub phones: Vec<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

impl Candidate {
    /// The caller-index keys the contact answers to: each email and each number it has.
    pub fn keys(&self, region: DefaultRegion) -> Vec<String> {
        let mut keys = emails_of(self);
        keys.extend(phones_of(self, region));
        keys
    }
}

/// Contacts to merge into one survivor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub survivor: u64,
    /// Merged into the survivor, oldest first.
    pub merged: Vec<u64>,
}

/// Contacts only a shared number joins, whose names disagree: left apart and reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedNumber {
    /// The contacts, oldest first.
    pub contacts: Vec<u64>,
}

/// What a sweep of these contacts would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    pub groups: Vec<Group>,
    pub shared_numbers: Vec<SharedNumber>,
}

/// Groups `contacts` by the rules above.
pub fn sweep(contacts: &[Candidate], region: DefaultRegion, merge_shared_numbers: bool) -> Sweep {
    let mut order: Vec<usize> = (0..contacts.len()).collect();
    order.sort_by_key(|i| (contacts[*i].created_ms, contacts[*i].id));
    let emails: Vec<Vec<String>> = contacts.iter().map(emails_of).collect();
    let phones: Vec<Vec<String>> = contacts.iter().map(|c| phones_of(c, region)).collect();

    // Everything that links: emails and numbers.
    let mut all = Links::new(contacts.len());
    let mut by_email = Links::new(contacts.len());
    link(&mut all, emails.iter().enumerate());
    link(&mut all, phones.iter().enumerate());
    link(&mut by_email, emails.iter().enumerate());

    let mut out = Sweep::default();
    for members in all.components(&order) {
        if members.len() < 2 {
            continue;
        }
        let compatible = members
            .iter()
            .enumerate()
            .all(|(n, a)| members[n + 1..].iter().all(|b| names_compatible(&contacts[*a], &contacts[*b])));
        if compatible || merge_shared_numbers {
            out.groups.push(group(contacts, &members));
            continue;
        }
        // Names disagree: emails still hold their contacts together; the rest stays apart.
        for part in by_email.components(&members) {
            if part.len() > 1 {
                out.groups.push(group(contacts, &part));
            }
        }
        out.shared_numbers.push(SharedNumber { contacts: members.iter().map(|i| contacts[*i].id).collect() });
    }
    out
}

fn group(contacts: &[Candidate], members: &[usize]) -> Group {
    Group { survivor: contacts[members[0]].id, merged: members[1..].iter().map(|i| contacts[*i].id).collect() }
}

/// Union-find over contact indices.
struct Links {
    parent: Vec<usize>,
}

impl Links {
    fn new(n: usize) -> Links {
        Links { parent: (0..n).collect() }
    }

    fn root(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }

    fn join(&mut self, a: usize, b: usize) {
        let (a, b) = (self.root(a), self.root(b));
        if a != b {
            self.parent[b.max(a)] = a.min(b);
        }
    }

    /// The components `members` fall into, each in `members`' order, ordered by their first.
    fn components(&mut self, members: &[usize]) -> Vec<Vec<usize>> {
        let mut by_root: BTreeMap<usize, (usize, Vec<usize>)> = BTreeMap::new();
        for (position, i) in members.iter().enumerate() {
            let root = self.root(*i);
            by_root.entry(root).or_insert_with(|| (position, Vec::new())).1.push(*i);
        }
        let mut out: Vec<(usize, Vec<usize>)> = by_root.into_values().collect();
        out.sort_by_key(|(first, _)| *first);
        out.into_iter().map(|(_, m)| m).collect()
    }
}

/// Joins the contacts that share a key.
fn link<'a>(links: &mut Links, keys: impl Iterator<Item = (usize, &'a Vec<String>)>) {
    let mut first: HashMap<&'a str, usize> = HashMap::new();
    for (i, ks) in keys {
        for k in ks {
            match first.get(k.as_str()) {
                Some(j) => links.join(*j, i),
                None => {
                    first.insert(k, i);
                }
            }
        }
    }
}

/// A contact's emails, normalised (lower case), each once; `hs_additional_emails` is
/// semicolon-separated.
fn emails_of(c: &Candidate) -> Vec<String> {
    let mut out: Vec<String> = c
        .emails
        .iter()
        .flat_map(|e| e.split(';'))
        .filter_map(|e| Email::parse(e.trim()).ok())
        .map(|e| format!("email:{}", e.as_str()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A contact's numbers in E.164, each once (what does not parse links nothing).
fn phones_of(c: &Candidate, region: DefaultRegion) -> Vec<String> {
    let mut out: Vec<String> = c
        .phones
        .iter()
        .filter_map(|p| PhoneE164::parse(p, region).ok())
        .map(|p| format!("phone:{}", p.as_str()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A name part for comparing: lower case letters and digits only.
fn normal(name: &Option<String>) -> String {
    name.as_deref().unwrap_or("").chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// Two name parts agree: either missing, equal, or one an initial of the other.
fn parts_agree(a: &str, b: &str) -> bool {
    if a.is_empty() || b.is_empty() || a == b {
        return true;
    }
    let initial = |x: &str, y: &str| x.chars().count() == 1 && y.starts_with(x);
    initial(a, b) || initial(b, a)
}

/// Whether two contacts may be one person by their names.
pub fn names_compatible(a: &Candidate, b: &Candidate) -> bool {
    parts_agree(&normal(&a.first_name), &normal(&b.first_name))
        && parts_agree(&normal(&a.last_name), &normal(&b.last_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: u64, created: i64, emails: &[&str], phones: &[&str], first: &str, last: &str) -> Candidate {
        let name = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Candidate {
            id,
            created_ms: created,
            emails: emails.iter().map(|e| e.to_string()).collect(),
            phones: phones.iter().map(|p| p.to_string()).collect(),
            first_name: name(first),
            last_name: name(last),
        }
    }

    #[test]
    fn one_number_in_three_formats_is_one_group_into_the_oldest() {
        let contacts = [
            c(30, 3, &[], &["571-830-8515"], "Dana", "Reyes"),
            c(10, 1, &[], &["+15718308515"], "Dana", ""),
            c(20, 2, &[], &["(571) 830-8515"], "D", "Reyes"),
        ];
        let s = sweep(&contacts, DefaultRegion::default(), false);
        assert_eq!(s.groups, [Group { survivor: 10, merged: vec![20, 30] }]);
        assert!(s.shared_numbers.is_empty());
    }

    #[test]
    fn links_are_transitive_across_numbers_and_emails() {
        let contacts = [
            c(1, 1, &["a@example.com"], &["4155550100"], "", ""),
            c(2, 2, &[], &["+1 415 555 0100"], "", ""),
            c(3, 3, &["x@example.com;A@Example.com"], &[], "", ""),
            c(4, 4, &["other@example.com"], &["4155550199"], "", ""),
        ];
        let s = sweep(&contacts, DefaultRegion::default(), false);
        assert_eq!(s.groups, [Group { survivor: 1, merged: vec![2, 3] }]);
    }

    #[test]
    fn a_number_shared_by_people_whose_names_disagree_is_reported_not_merged() {
        let contacts = [
            c(1, 1, &["pat@example.com"], &["2125550142"], "Pat", "Lee"),
            c(2, 2, &[], &["(212) 555-0142"], "Sam", "Lee"),
            c(3, 3, &["PAT@example.com"], &[], "Patricia", "Lee"),
        ];
        let s = sweep(&contacts, DefaultRegion::default(), false);
        assert_eq!(s.groups, [Group { survivor: 1, merged: vec![3] }], "the email still holds Pat's records together");
        assert_eq!(s.shared_numbers, [SharedNumber { contacts: vec![1, 2, 3] }]);
        let forced = sweep(&contacts, DefaultRegion::default(), true);
        assert_eq!(forced.groups, [Group { survivor: 1, merged: vec![2, 3] }]);
        assert!(forced.shared_numbers.is_empty());
    }

    #[test]
    fn the_oldest_survives_then_the_lowest_id() {
        let contacts = [c(9, 5, &["a@example.com"], &[], "", ""), c(7, 5, &["a@example.com"], &[], "", "")];
        assert_eq!(sweep(&contacts, DefaultRegion::default(), false).groups, [Group { survivor: 7, merged: vec![9] }]);
    }

    #[test]
    fn names_agree_when_missing_equal_or_an_initial() {
        let a = c(1, 1, &[], &[], "Dana", "Reyes");
        assert!(names_compatible(&a, &c(2, 1, &[], &[], "d.", "REYES")));
        assert!(names_compatible(&a, &c(2, 1, &[], &[], "", "")));
        assert!(!names_compatible(&a, &c(2, 1, &[], &[], "Dan", "Reyes")));
        assert!(!names_compatible(&a, &c(2, 1, &[], &[], "Dana", "Reed")));
    }
}
