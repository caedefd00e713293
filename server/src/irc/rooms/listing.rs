//! The terms of `LIST`: `>n`, `<n` and room name masks, comma separated (as InspIRCd and
//! ergo read them). A room passes if it passes every count term and, when there are any
//! masks, matches one of them.

use crate::state::chat::fold;
use crate::state::room_modes::glob;

/// Most terms looked at.
const MAX_TERMS: usize = 16;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Filter {
    more_than: Option<usize>,
    fewer_than: Option<usize>,
    masks: Vec<String>,
}

impl Filter {
    pub fn parse(terms: &str) -> Filter {
        let mut f = Filter::default();
        for term in terms.split(',').filter(|t| !t.is_empty()).take(MAX_TERMS) {
            if let Some(n) = term.strip_prefix('>') {
                f.more_than = n.parse().ok().or(f.more_than);
            } else if let Some(n) = term.strip_prefix('<') {
                f.fewer_than = n.parse().ok().or(f.fewer_than);
            } else {
                f.masks.push(fold(term));
            }
        }
        f
    }

    pub fn admits(&self, name: &str, users: usize) -> bool {
        self.more_than.is_none_or(|n| users > n)
            && self.fewer_than.is_none_or(|n| users < n)
            && (self.masks.is_empty() || self.masks.iter().any(|m| glob(m, &fold(name))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms() {
        let f = Filter::parse(">1,<5");
        assert!(f.admits("#a", 2) && f.admits("#a", 4));
        assert!(!f.admits("#a", 1) && !f.admits("#a", 5));
        let f = Filter::parse("#Dev*,#ops");
        assert!(f.admits("#devs", 0) && f.admits("#OPS", 3));
        assert!(!f.admits("#opsx", 3));
        assert_eq!(Filter::parse(""), Filter::default());
    }
}
