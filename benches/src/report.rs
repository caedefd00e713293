//! Scenario results: a small JSON writer (one object per scenario) and the human summary.

use crate::track::{Latency, SenderStats};
use std::fmt::Write;

#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Num(f64),
    Str(String),
    Arr(Vec<Value>),
    Obj(Vec<(String, Value)>),
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(i64::from(v))
    }
}
impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Num(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Str(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl Value {
    pub fn write_json(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Num(n) if n.is_finite() => {
                // Three decimals are plenty for rates and microseconds.
                let r = (n * 1000.0).round() / 1000.0;
                let _ = write!(out, "{r}");
            }
            Value::Num(_) => out.push_str("null"),
            Value::Str(s) => escape(out, s),
            Value::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write_json(out);
                }
                out.push(']');
            }
            Value::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    escape(out, k);
                    out.push(':');
                    v.write_json(out);
                }
                out.push('}');
            }
        }
    }
}

fn escape(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One scenario's outcome.
#[derive(Debug, Clone)]
pub struct Report {
    pub scenario: String,
    /// Fields in output order (parameters first, then measurements).
    pub fields: Vec<(String, Value)>,
    /// Lines of the human summary.
    pub summary: Vec<String>,
    /// Problems that make the run incorrect (lost or reordered messages, failed logins...).
    pub problems: Vec<String>,
    /// Caveats (the tool saturated a core...).
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(scenario: &str) -> Report {
        Report {
            scenario: scenario.to_string(),
            fields: Vec::new(),
            summary: Vec::new(),
            problems: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        let value = value.into();
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.fields.push((key.to_string(), value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn num(&self, key: &str) -> Option<f64> {
        match self.get(key)? {
            Value::Int(i) => Some(*i as f64),
            Value::Num(n) => Some(*n),
            _ => None,
        }
    }

    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn latency(&mut self, prefix: &str, l: &Latency) {
        self.set(&format!("{prefix}samples"), l.count);
        self.set(&format!("{prefix}p50_us"), l.p50_us);
        self.set(&format!("{prefix}p99_us"), l.p99_us);
        self.set(&format!("{prefix}p999_us"), l.p999_us);
        self.set(&format!("{prefix}max_us"), l.max_us);
        self.set(&format!("{prefix}mean_us"), l.mean_us);
    }

    pub fn senders(&mut self, stats: &[SenderStats]) {
        let arr = stats
            .iter()
            .map(|s| {
                Value::Obj(vec![
                    ("sent".into(), s.sent.into()),
                    ("expected".into(), s.expected.into()),
                    ("received".into(), s.received.into()),
                    ("lost".into(), s.lost.into()),
                    ("reordered".into(), s.reordered.into()),
                ])
            })
            .collect();
        self.set("per_sender", Value::Arr(arr));
        for (i, s) in stats.iter().enumerate() {
            if s.lost > 0 || s.reordered > 0 {
                self.problems.push(format!(
                    "sender {i}: {} of {} deliveries lost, {} reordered",
                    s.lost, s.expected, s.reordered
                ));
            }
        }
    }

    pub fn to_json(&self) -> String {
        let mut fields = vec![("scenario".to_string(), Value::from(self.scenario.as_str()))];
        fields.extend(self.fields.iter().cloned());
        fields.push(("ok".into(), self.ok().into()));
        fields.push((
            "problems".into(),
            Value::Arr(self.problems.iter().map(|p| p.as_str().into()).collect()),
        ));
        fields.push((
            "notes".into(),
            Value::Arr(self.notes.iter().map(|p| p.as_str().into()).collect()),
        ));
        let mut out = String::new();
        Value::Obj(fields).write_json(&mut out);
        out
    }

    pub fn to_human(&self) -> String {
        let mut out = format!("== {} ==\n", self.scenario);
        for l in &self.summary {
            let _ = writeln!(out, "  {l}");
        }
        for n in &self.notes {
            let _ = writeln!(out, "  note: {n}");
        }
        if self.problems.is_empty() {
            out.push_str("  result: OK\n");
        } else {
            for p in &self.problems {
                let _ = writeln!(out, "  PROBLEM: {p}");
            }
        }
        out
    }
}

/// `1234567.8` -> `1,234,568`
pub fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_and_orders() {
        let mut r = Report::new("fanout");
        r.set("server", "a \"b\"\n");
        r.set("rate", 1.23456);
        r.set("n", 3u64);
        r.set("none", Option::<u64>::None);
        r.problems.push("x".into());
        assert_eq!(
            r.to_json(),
            r#"{"scenario":"fanout","server":"a \"b\"\n","rate":1.235,"n":3,"none":null,"ok":false,"problems":["x"],"notes":[]}"#
        );
        assert_eq!(thousands(1234567.8), "1,234,568");
        assert_eq!(thousands(12.0), "12");
    }
}
