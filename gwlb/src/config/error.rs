//! Why a configuration was refused ([`ConfigError`]) or is questionable ([`ConfigWarning`]),
//! and how the byte span of a TOML syntax or type error is mapped back to a field path.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// Why a configuration was refused. The `Display` form always starts with the field path
/// (or the file, for I/O errors), e.g.
/// `target_groups[0].health_check.interval_ms: 50 is out of range 100..=300000`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An error in a file loaded with [`Config::load`](crate::config::Config::load): the file,
    /// then the error.
    #[error("{}: {inner}", file.display())]
    InFile {
        /// The file.
        file: PathBuf,
        /// The error in it.
        inner: Box<ConfigError>,
    },
    /// TOML syntax error, wrong type, unknown field or variant, missing field.
    #[error("{}: {message} (line {line}, column {column})", display_field(field))]
    Toml {
        /// Field path, e.g. `ports[1].role`; empty for the top level.
        field: String,
        /// What `toml`/`serde` said.
        message: String,
        /// 1-based line of the error (0 when unknown).
        line: usize,
        /// 1-based column of the error (0 when unknown).
        column: usize,
    },
    /// A value that parses but breaks a rule.
    #[error("{}: {message}", display_field(field))]
    Invalid {
        /// Field path, e.g. `routes[0].via`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// The path of the field the error is about, if it is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::InFile { inner, .. } => inner.field(),
            ConfigError::Toml { field, .. } | ConfigError::Invalid { field, .. } => Some(field),
        }
    }
}

fn display_field(field: &str) -> &str {
    if field.is_empty() {
        "(top level)"
    } else {
        field
    }
}

pub(super) fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: truncate_text(field.into(), 200),
        message: truncate_text(message.into(), MAX_MESSAGE_LEN),
    }
}

/// Longest error message kept whole; longer ones (a huge value quoted back) are cut, so that a
/// 10 MB value is not echoed whole into logs and API replies.
pub const MAX_MESSAGE_LEN: usize = 512;

/// `s` cut to at most `max` bytes (at a character boundary), saying how long it was.
pub fn truncate_text(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let total = s.len();
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str(&format!("... ({total} bytes, cut)"));
    s
}

/// Advice about a valid configuration (displayed like an error: `field: message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// Field path the warning is about.
    pub field: String,
    /// The advice.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", display_field(&self.field), self.message)
    }
}

// ---------------------------------------------------------------------------------------------
// TOML error -> field path
// ---------------------------------------------------------------------------------------------

pub(super) fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    // One line, and no internal types: the raw structs hold integers as i64 only so that
    // range errors are ours.
    let message = e
        .message()
        .trim()
        .replace('\n', "; ")
        .replace("expected i64", "expected an integer");
    let span = e.span();
    let (line, column) = span.as_ref().map_or((0, 0), |s| line_column(text, s.start));
    let mut field = match &span {
        Some(s) => match toml_edit::ImDocument::parse(text) {
            Ok(doc) => path_at(&doc, s),
            Err(_) => guess_path(text, s.start),
        },
        None => String::new(),
    };
    // `missing field `x`` points at the table; name the field itself.
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        if !field.is_empty() {
            field.push('.');
        }
        field.push_str(name);
    }
    ConfigError::Toml {
        field,
        message,
        line,
        column,
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Every key, value and table header of the document with its byte span and path.
fn collect_spans(table: &toml_edit::Table, path: &str, out: &mut Vec<(Range<usize>, String)>) {
    if let Some(s) = table.span() {
        out.push((s, path.to_owned()));
    }
    for (k, item) in table.iter() {
        let p = join_key(path, k);
        if let Some(s) = table.get_key_value(k).and_then(|(key, _)| key.span()) {
            out.push((s, p.clone()));
        }
        match item {
            toml_edit::Item::None => {}
            toml_edit::Item::Value(v) => collect_value_spans(v, &p, out),
            toml_edit::Item::Table(t) => collect_spans(t, &p, out),
            toml_edit::Item::ArrayOfTables(a) => {
                for (i, t) in a.iter().enumerate() {
                    collect_spans(t, &format!("{p}[{i}]"), out);
                }
            }
        }
    }
}

fn collect_value_spans(v: &toml_edit::Value, path: &str, out: &mut Vec<(Range<usize>, String)>) {
    if let Some(s) = v.span() {
        out.push((s, path.to_owned()));
    }
    match v {
        toml_edit::Value::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                collect_value_spans(e, &format!("{path}[{i}]"), out);
            }
        }
        toml_edit::Value::InlineTable(t) => {
            for (k, e) in t.iter() {
                let p = join_key(path, k);
                if let Some(s) = t.get_key_value(k).and_then(|(key, _)| key.span()) {
                    out.push((s, p.clone()));
                }
                collect_value_spans(e, &p, out);
            }
        }
        _ => {}
    }
}

/// The path of the smallest key, value or header whose span holds `span`.
fn path_at(doc: &toml_edit::ImDocument<&str>, span: &Range<usize>) -> String {
    let mut spans = Vec::new();
    collect_spans(doc, "", &mut spans);
    spans
        .into_iter()
        .filter(|(s, _)| {
            s.start <= span.start && span.end <= s.end && (s.start < s.end || s.start == span.start)
        })
        .min_by(|(a, pa), (b, pb)| {
            (a.end - a.start)
                .cmp(&(b.end - b.start))
                .then(pb.len().cmp(&pa.len()))
        })
        .map(|(_, p)| p)
        .unwrap_or_default()
}

/// For syntax errors (no document to walk): the last table header before `offset` with
/// array-of-tables indices, plus the key on the error's line if there is one.
fn guess_path(text: &str, offset: usize) -> String {
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut header = String::new();
    let render = |name: &str, counts: &HashMap<String, usize>| -> String {
        let mut out = String::new();
        let mut prefix = String::new();
        for part in name.split('.').map(str::trim) {
            prefix = join_key(&prefix, part);
            out = join_key(&out, part);
            if let Some(n) = counts.get(&prefix) {
                out.push_str(&format!("[{}]", n.saturating_sub(1)));
            }
        }
        out
    };
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let start = pos;
        pos += line.len();
        let t = line.trim();
        let on_error_line = offset < pos || pos >= text.len();
        if on_error_line {
            if !t.starts_with('[') {
                if let Some((key, _)) = t.split_once('=') {
                    let key = key.trim();
                    if !key.is_empty()
                        && key.bytes().all(|b| {
                            b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
                        })
                    {
                        return join_key(&header, key);
                    }
                }
            }
            let _ = start;
            return header;
        }
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = name.trim().to_owned();
            *counts.entry(name.clone()).or_insert(0) += 1;
            let nested = format!("{name}.");
            counts.retain(|k, _| !k.starts_with(&nested));
            header = render(&name, &counts);
        } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
            header = render(name.trim(), &counts);
        }
    }
    header
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;
    use crate::config::Config;

    #[test]
    fn test_unknown_field() {
        expect_err(
            &port_with("nmae = \"x\""),
            "ports[0].nmae",
            "unknown field `nmae`",
        );
        expect_err(
            &with("[dataplane]\nburst = 3"),
            "dataplane.burst",
            "unknown field",
        );
        expect_err(&with("[bogus]\nx = 1"), "bogus", "unknown field");
        expect_err(
            &MINIMAL.replace(
                "address = \"10.0.0.10\"",
                "address = \"10.0.0.10\"\nwieght = 2",
            ),
            "target_groups[0].targets[0].wieght",
            "unknown field",
        );
        expect_err(
            &with("[target_groups.health_check]\nintervall_ms = 1"),
            "target_groups[0].health_check.intervall_ms",
            "unknown field",
        );
    }

    #[test]
    fn test_unknown_variant() {
        expect_err(
            &MINIMAL.replace("role = \"both\"", "role = \"foo\""),
            "ports[0].role",
            "unknown variant `foo`, expected one of `user`, `appliance`, `both`",
        );
        expect_err(
            &group_with("stickiness = \"4-tuple\""),
            "target_groups[0].stickiness",
            "unknown variant",
        );
    }

    #[test]
    fn test_type_errors() {
        expect_err(
            &port_with("mtu = \"big\""),
            "ports[0].mtu",
            "invalid type: string \"big\", expected an integer",
        );
        expect_err(
            &with("[dataplane]\nworker_cpus = [1, \"x\"]"),
            "dataplane.worker_cpus[1]",
            "invalid type",
        );
        expect_err(
            &group_with("health_check = { interval_ms = true }"),
            "target_groups[0].health_check.interval_ms",
            "invalid type",
        );
        expect_err(
            &group_with("endpoint_id = -1"),
            "target_groups[0].endpoint_id",
            "negative",
        );
        expect_err(
            &group_with("endpoint_id = \"0xzz\""),
            "target_groups[0].endpoint_id",
            "not a 64-bit",
        );
    }

    #[test]
    fn test_missing_field() {
        expect_err(
            &MINIMAL.replace("role = \"both\"\n", ""),
            "ports[0].role",
            "missing field",
        );
        expect_err(
            &MINIMAL.replace("address = \"10.0.0.10\"", "weight = 1"),
            "target_groups[0].targets[0].address",
            "missing field",
        );
    }

    #[test]
    fn test_syntax_error() {
        let e = Config::from_toml_str(&port_with("mtu = = 3")).unwrap_err();
        assert_eq!(e.field(), Some("ports[0].mtu"), "{e}");
        assert!(e.to_string().contains("line "), "{e}");
        assert!(!e.to_string().contains('\n'), "{e}");
        let e =
            Config::from_toml_str(&with("[[target_groups.targets]]\naddress = \"x")).unwrap_err();
        assert_eq!(
            e.field(),
            Some("target_groups[0].targets[1].address"),
            "{e}"
        );
    }
}
