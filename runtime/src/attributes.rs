//! Search attributes: a small JSON object per run — set at the start,
//! upserted by the workflow (`durable.upsert-search-attributes`, a
//! journaled command), copied to a continued run — that lists filter on.
//! Small by contract: the row carries them on every read of the execution.

use serde_json::{Map, Value};

/// The most attributes one run holds.
pub const SEARCH_ATTRIBUTES_MAX: usize = 32;
/// The longest attribute name.
pub const KEY_BYTES_MAX: usize = 64;
/// The longest string value.
pub const STRING_VALUE_BYTES_MAX: usize = 256;
/// The longest attributes document (a start's, or one upsert's, which is
/// journaled as sent): room for every attribute at its largest.
pub const DOCUMENT_BYTES_MAX: usize = 16 * 1024;

/// Why attributes were refused; the message says what to send instead.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AttributeProblem(String);

fn problem(message: String) -> AttributeProblem {
    AttributeProblem(message)
}

/// Parses `text` as an object of attributes: names of letters, digits, `_`
/// and `-`; values strings, numbers, booleans, or `null` (which removes the
/// attribute in an upsert).
pub fn parse(text: &str) -> Result<Map<String, Value>, AttributeProblem> {
    if text.len() > DOCUMENT_BYTES_MAX {
        return Err(problem(format!(
            "search attributes are {} bytes of JSON; at most {DOCUMENT_BYTES_MAX}",
            text.len()
        )));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|error| problem(format!("search attributes are not JSON ({error})")))?;
    let Value::Object(object) = value else {
        return Err(problem(format!(
            "search attributes are a JSON object like {{\"customer\": \"acme\", \"priority\": 2}}; got {text:.80}"
        )));
    };
    for (key, value) in &object {
        check_key(key)?;
        match value {
            Value::String(text) if text.len() > STRING_VALUE_BYTES_MAX => {
                return Err(problem(format!(
                    "search attribute `{key}` is {} bytes; a string value is at most {STRING_VALUE_BYTES_MAX}",
                    text.len()
                )));
            }
            Value::Array(_) | Value::Object(_) => {
                return Err(problem(format!(
                    "search attribute `{key}` is a list or an object; values are strings, numbers, booleans (or null to remove one)"
                )));
            }
            _ => {}
        }
    }
    Ok(object)
}

/// Checks an attribute name.
pub fn check_key(key: &str) -> Result<(), AttributeProblem> {
    let well_formed = !key.is_empty()
        && key.len() <= KEY_BYTES_MAX
        && key
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if well_formed {
        Ok(())
    } else {
        Err(problem(format!(
            "search attribute names are 1 to {KEY_BYTES_MAX} letters, digits, `_` or `-`; got {key:?}"
        )))
    }
}

/// `current` (a stored object, or none) with `changes` applied — `null`
/// removes — as the compact JSON text to store, within the limits.
pub fn merge(
    current: Option<&str>,
    changes: Map<String, Value>,
) -> Result<String, AttributeProblem> {
    let mut merged = match current {
        Some(text) => parse(text)?,
        None => Map::new(),
    };
    for (key, value) in changes {
        if value.is_null() {
            merged.remove(&key);
        } else {
            merged.insert(key, value);
        }
    }
    if merged.len() > SEARCH_ATTRIBUTES_MAX {
        return Err(problem(format!(
            "a run holds at most {SEARCH_ATTRIBUTES_MAX} search attributes; this would make {}",
            merged.len()
        )));
    }
    Ok(Value::Object(merged).to_string())
}

/// A list filter `key=value`: the value as JSON if it parses (`2`,
/// `true`, `"x"`), else as a string (`acme`). Returns the name and the
/// value's compact JSON text, the form the store compares.
pub fn filter(text: &str) -> Result<(String, String), AttributeProblem> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(problem(format!(
            "a search attribute filter is NAME=VALUE, like customer=acme or priority=2; got {text:?}"
        )));
    };
    check_key(key)?;
    let value = match serde_json::from_str::<Value>(value) {
        Ok(parsed @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => parsed,
        _ => Value::String(value.to_string()),
    };
    Ok((key.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_replaces_and_removes() {
        let start = merge(None, parse(r#"{"tier":"gold","n":1}"#).expect("parse")).expect("merge");
        let next = merge(
            Some(&start),
            parse(r#"{"n":2,"tier":null,"done":true}"#).expect("parse"),
        )
        .expect("merge");
        assert_eq!(next, r#"{"done":true,"n":2}"#);
    }

    #[test]
    fn bad_attributes_are_refused_with_what_to_send() {
        for (text, complaint) in [
            ("[1]", "a JSON object"),
            (r#"{"a b":1}"#, "names are 1 to 64"),
            (r#"{"a":[1]}"#, "a list or an object"),
            ("{nope", "not JSON"),
        ] {
            let refused = parse(text).expect_err(text).to_string();
            assert!(refused.contains(complaint), "{text}: {refused}");
        }
        let long = format!(r#"{{"a":"{}"}}"#, "x".repeat(STRING_VALUE_BYTES_MAX + 1));
        assert!(parse(&long).is_err());
        let removals: Vec<String> = (0..2000)
            .map(|index| format!(r#""k{index}":null"#))
            .collect();
        let huge = format!("{{{}}}", removals.join(","));
        assert!(
            parse(&huge)
                .expect_err("too big")
                .to_string()
                .contains("at most 16384")
        );
        let many: Map<String, Value> = (0..=SEARCH_ATTRIBUTES_MAX)
            .map(|index| (format!("k{index}"), Value::from(index)))
            .collect();
        assert!(
            merge(None, many)
                .expect_err("too many")
                .to_string()
                .contains("at most 32")
        );
    }

    #[test]
    fn filters_read_json_values_and_bare_strings() {
        assert_eq!(
            filter("tier=gold").expect("filter"),
            ("tier".into(), r#""gold""#.into())
        );
        assert_eq!(filter("n=2").expect("filter"), ("n".into(), "2".into()));
        assert_eq!(
            filter("ok=true").expect("filter"),
            ("ok".into(), "true".into())
        );
        assert_eq!(
            filter(r#"id="7""#).expect("filter"),
            ("id".into(), r#""7""#.into())
        );
        assert!(filter("novalue").is_err());
    }
}
