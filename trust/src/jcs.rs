//! JSON Canonicalization Scheme (RFC 8785): object members sorted by their UTF-16 code
//! units, no whitespace, strings escaped as JSON requires and nothing more, numbers as
//! ECMAScript prints them. What farm signs is this text of a record. Checked against
//! the PyPI `rfc8785` package (tests/e2e/trust.rs).

use serde_json::Value;

/// The canonical text of `value`.
pub fn canonicalize(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number(n)),
        Value::String(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (key, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(key).unwrap_or_default());
                out.push(':');
                write(item, out);
            }
            out.push('}');
        }
    }
}

/// ECMAScript's Number::toString for the doubles JSON carries.
fn number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        if i.unsigned_abs() < (1u64 << 53) {
            return i.to_string();
        }
    }
    if let Some(u) = n.as_u64() {
        if u < (1u64 << 53) {
            return u.to_string();
        }
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f == 0.0 {
        return "0".to_owned();
    }
    let abs = f.abs();
    if (1e-6..1e21).contains(&abs) {
        // Rust prints the shortest round-trip digits without an exponent, as JS does here.
        return format!("{f}");
    }
    // `1.5e21` -> `1.5e+21`; `1e-7` stays.
    let text = format!("{f:e}");
    match text.split_once('e') {
        Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_sort_numbers_print_as_ecmascript_and_strings_escape_minimally() {
        let value: Value = serde_json::from_str(
            r#"{"b":1.5e21,"a":[1e-7,0.1,"é\u001f\n"],"c":3.0,"\u20ac":1,"\ud83d\ude00":2,"d":-0.0,"e":100000000000000000000}"#,
        )
        .unwrap();
        assert_eq!(
            canonicalize(&value),
            "{\"a\":[1e-7,0.1,\"é\\u001f\\n\"],\"b\":1.5e+21,\"c\":3,\"d\":0,\"e\":100000000000000000000,\"€\":1,\"😀\":2}"
        );
    }
}
