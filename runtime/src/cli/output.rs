//! How commands print: for people by default, JSON with `--json`; and
//! recorded payloads shown as recorded, never through a float.

/// Output for a person (default) or for a script (`--json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

impl Format {
    pub fn from_flag(json: bool) -> Format {
        if json { Format::Json } else { Format::Human }
    }
}

/// Indentation of [`pretty_json`].
const INDENT: &str = "  ";

/// `text` (valid JSON) indented for reading, every token kept as written:
/// `13979697887323312865` and `0.10000000000000001` stay what they are,
/// where a round trip through `f64` would change them.
pub fn pretty_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.trim().chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(INDENT);
        }
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                // An empty object or array stays on its line.
                while chars.peek().is_some_and(|next| next.is_whitespace()) {
                    chars.next();
                }
                if let Some(&close @ ('}' | ']')) = chars.peek() {
                    out.push(close);
                    chars.next();
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_strings_keep_their_text() {
        let text = r#"{"big":13979697887323312865,"float":0.10000000000000001,"exp":1E+30,"s":"a, {b}: \"c\"","empty":{},"list":[ ],"nested":[1,{"x":-0.0}]}"#;
        let pretty = pretty_json(text);
        assert_eq!(
            pretty,
            r#"{
  "big": 13979697887323312865,
  "float": 0.10000000000000001,
  "exp": 1E+30,
  "s": "a, {b}: \"c\"",
  "empty": {},
  "list": [],
  "nested": [
    1,
    {
      "x": -0.0
    }
  ]
}"#
        );
        let reparsed: serde_json::Value = serde_json::from_str(&pretty).expect("still JSON");
        let original: serde_json::Value = serde_json::from_str(text).expect("JSON");
        assert_eq!(reparsed, original);
    }

    #[test]
    fn scalars_print_as_themselves() {
        assert_eq!(
            pretty_json(" 18446744073709551616 "),
            "18446744073709551616"
        );
        assert_eq!(pretty_json(r#""text""#), r#""text""#);
        assert_eq!(pretty_json("null"), "null");
    }
}
