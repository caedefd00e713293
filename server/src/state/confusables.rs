//! The look-alike "skeleton" of a nick: two names with the same skeleton are easily mistaken
//! for each other on screen (`alice`, `aIice`, `ALICE`, `a1ice`). Names are ASCII
//! (`A-Z a-z 0-9 _ -`), so a small fixed table does: case, `I`/`l`/`1`/`i`/`|`, `O`/`0`,
//! `rn`/`m`, `vv`/`w`, `cl`/`d`, `5`/`S`, `8`/`B`, `_`/`-`.

/// The skeleton of `name`: lowercase, each look-alike group mapped to one representative.
pub fn skeleton(name: &str) -> String {
    let lower: Vec<char> = name.chars().map(|c| c.to_ascii_lowercase()).collect();
    let mut out = String::with_capacity(lower.len());
    let mut i = 0;
    while i < lower.len() {
        let pair = (lower[i], lower.get(i + 1).copied());
        let (c, used) = match pair {
            ('r', Some('n')) => ('m', 2),
            ('v', Some('v')) => ('w', 2),
            ('c', Some('l')) => ('d', 2),
            ('i' | '1' | '|', _) => ('l', 1),
            ('0', _) => ('o', 1),
            ('5', _) => ('s', 1),
            ('8', _) => ('b', 1),
            ('-', _) => ('_', 1),
            (c, _) => (c, 1),
        };
        out.push(c);
        i += used;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confusable(a: &str, b: &str) -> bool {
        skeleton(a) == skeleton(b)
    }

    #[test]
    fn case_and_look_alike_letters() {
        for fake in ["aIice", "ALICE", "a1ice", "alIce", "AIice", "a|ice"] {
            assert!(confusable(fake, "alice"), "{fake}");
        }
        assert!(confusable("b0b", "bob"));
        assert!(confusable("BOB", "b0B"));
        assert!(confusable("rnallory", "mallory"));
        assert!(confusable("mallory", "rnallory"));
        assert!(confusable("vvendy", "wendy"));
        assert!(confusable("clave", "dave"));
        assert!(confusable("joe-x", "joe_x"));
    }

    #[test]
    fn different_names_stay_different() {
        for (a, b) in [
            ("alice", "alicia"),
            ("bob", "rob"),
            ("carol", "caro"),
            ("m", "nn"),
        ] {
            assert!(!confusable(a, b), "{a} {b}");
        }
        assert_eq!(skeleton(""), "");
        assert_eq!(skeleton("r"), "r", "a lone r at the end");
    }
}
