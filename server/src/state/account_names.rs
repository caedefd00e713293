//! Every registered account name and its look-alike skeleton, in memory: loaded at start from
//! the account store and added to on each registration, so a guest's nick is checked without
//! asking the store. About a hundred bytes per account.

use crate::state::confusables::skeleton;
use rustc_hash::FxHashSet;

#[derive(Debug, Default)]
pub struct AccountNames {
    /// Lowercase names.
    names: FxHashSet<String>,
    skeletons: FxHashSet<String>,
}

impl AccountNames {
    pub fn new() -> AccountNames {
        AccountNames::default()
    }

    /// Records a registered account name (any case).
    pub fn insert(&mut self, name: &str) {
        self.skeletons.insert(skeleton(name));
        self.names.insert(name.to_ascii_lowercase());
    }

    /// Is `name` (any case) a registered account?
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(&name.to_ascii_lowercase())
    }

    /// Could `nick` be mistaken for a registered account name (the name itself included)?
    pub fn looks_like_an_account(&self, nick: &str) -> bool {
        self.skeletons.contains(&skeleton(nick))
    }
}

impl<S: AsRef<str>> FromIterator<S> for AccountNames {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> AccountNames {
        let mut names = AccountNames::new();
        for name in iter {
            names.insert(name.as_ref());
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_look_alike() {
        let mut n: AccountNames = ["Alice", "bob"].into_iter().collect();
        assert!(n.contains("alice") && n.contains("BOB"));
        assert!(!n.contains("aIice"));
        assert!(n.looks_like_an_account("aIice"));
        assert!(n.looks_like_an_account("b0b"));
        assert!(!n.looks_like_an_account("carol"));
        n.insert("carol");
        assert!(n.looks_like_an_account("CAR0L"));
    }
}
