//! Plain-words messages for JSON bodies that do not fit their type.
//!
//! serde's messages name Rust types (`expected struct NewProduct`, `expected u32`), which tell a
//! client nothing it can act on and show the engine's internals. Here each failure is named by
//! the field it concerns (a path such as `items[2].price`) and described in words a client's
//! developer understands: what was expected, and what kind of value came instead.

use serde_json::error::Category;

/// The message of a body that is not valid JSON or not of the expected shape (the path error of
/// `serde_path_to_error`).
pub fn describe(err: &serde_path_to_error::Error<serde_json::Error>) -> String {
    describe_at(&err.path().to_string(), err.inner())
}

/// The message of `inner`, met at `path` (`.` for the whole body).
pub fn describe_at(path: &str, inner: &serde_json::Error) -> String {
    match inner.classify() {
        Category::Syntax => format!(
            "body is not valid JSON (line {}, column {})",
            inner.line(),
            inner.column()
        ),
        Category::Eof => "body is not valid JSON: it ends too early".to_owned(),
        Category::Io => "body could not be read".to_owned(),
        Category::Data => {
            let path = (path != ".").then_some(path);
            data_problem(path, &bare_message(inner))
        }
    }
}

/// serde_json's message without its ` at line L column C` suffix.
fn bare_message(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_owned()
}

fn join(path: Option<&str>, field: &str) -> String {
    match path {
        Some(p) => format!("{p}.{field}"),
        None => field.to_owned(),
    }
}

/// `{field}: {problem}` (the shape of every field error), or `body {problem}` for the whole body.
fn about(path: Option<&str>, problem: &str) -> String {
    match path {
        Some(p) => format!("{p}: {problem}"),
        None => format!("body {problem}"),
    }
}

fn data_problem(path: Option<&str>, message: &str) -> String {
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or_default();
        return format!("{}: is required", join(path, field));
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        // The path already ends at the unknown key (it was read before it was refused).
        let field = rest.split('`').next().unwrap_or_default();
        return format!("{}: is not a known field", path.unwrap_or(field));
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let choices = rest.split_once("expected ").map_or("", |(_, c)| c);
        let choices = choices.trim_start_matches("one of ").replace('`', "");
        return about(path, &format!("must be one of: {choices}"));
    }
    // The wrong kind of value: say what came instead (its kind, never the value itself).
    if let Some(rest) = message.strip_prefix("invalid type: ")
        && let Some((got, expected)) = rest.rsplit_once(", expected ")
    {
        let (got, expected) = (kind_of(got), expectation(expected));
        return about(path, &format!("must be {expected}, not {got}"));
    }
    // The right kind but out of range (a negative count, a number too large).
    if let Some(rest) = message.strip_prefix("invalid value: ")
        && let Some((_, expected)) = rest.rsplit_once(", expected ")
    {
        return about(path, &format!("must be {}", expectation(expected)));
    }
    if message.starts_with("invalid length ") {
        return about(path, "has the wrong number of items");
    }
    if leaks_internals(message) {
        about(path, "has an invalid value")
    } else {
        about(path, message)
    }
}

/// What kind of JSON value serde saw (`string "x"` → `a string`); never echoes the value.
fn kind_of(unexpected: &str) -> &'static str {
    let word = unexpected.split([' ', '`']).next().unwrap_or_default();
    match word {
        "string" | "char" => "a string",
        "integer" => "a number",
        "floating" => "a number with a fraction",
        "boolean" => "a boolean",
        "null" | "unit" => "null",
        "sequence" => "an array",
        "map" => "an object",
        _ => "this value",
    }
}

/// serde's expectation in plain words (`struct NewProduct` → `an object`, `u32` → a number).
fn expectation(expected: &str) -> &'static str {
    let e = expected.trim();
    let word = e.trim_start_matches("a ").trim_start_matches("an ");
    match word.split(' ').next().unwrap_or_default() {
        "struct" | "map" => "an object",
        "enum" | "variant" => "one of the allowed values",
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "integer" => "a whole number",
        "f32" | "f64" | "number" => "a number",
        "string" | "borrowed" | "str" | "char" | "character" => "a string",
        "boolean" | "bool" => "true or false",
        "sequence" | "tuple" | "array" => "an array",
        _ => "a valid value",
    }
}

/// Whether a message names Rust types or paths (custom messages are passed on otherwise).
fn leaks_internals(message: &str) -> bool {
    const RUST_WORDS: [&str; 18] = [
        "struct", "enum", "::", "Option", "Vec<", "String", "u8", "u16", "u32", "u64", "usize",
        "i8", "i16", "i32", "i64", "isize", "f32", "f64",
    ];
    RUST_WORDS.iter().any(|w| message.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Item {
        name: String,
        count: u32,
        price: i64,
        kind: Kind,
        #[serde(default)]
        tags: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Small,
        Large,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Strict {
        name: String,
        #[serde(default)]
        inner: Option<StrictInner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct StrictInner {
        size: u32,
    }

    #[test]
    fn an_unknown_field_is_named_once_by_its_path() {
        let strict = |json: &str| {
            let de = &mut serde_json::Deserializer::from_str(json);
            describe(&serde_path_to_error::deserialize::<_, Strict>(de).unwrap_err())
        };
        assert_eq!(
            strict(r#"{"name":"n","extra":1}"#),
            "extra: is not a known field"
        );
        assert_eq!(
            strict(r#"{"name":"n","inner":{"size":1,"colour":"red"}}"#),
            "inner.colour: is not a known field"
        );
    }

    fn message(json: &str) -> String {
        let de = &mut serde_json::Deserializer::from_str(json);
        let err = serde_path_to_error::deserialize::<_, Item>(de).unwrap_err();
        describe(&err)
    }

    #[test]
    fn messages_name_the_field_and_the_problem_without_rust_names() {
        let cases = [
            (r#"7"#, "body must be an object, not a number"),
            (r#"null"#, "body must be an object, not null"),
            (r#""x""#, "body must be an object, not a string"),
            (
                r#"{"count":1,"price":1,"kind":"small"}"#,
                "name: is required",
            ),
            (
                r#"{"name":"n","count":-1,"price":1,"kind":"small"}"#,
                "count: must be a whole number, 0 or more",
            ),
            (
                r#"{"name":"n","count":"3","price":1,"kind":"small"}"#,
                "count: must be a whole number, 0 or more, not a string",
            ),
            (
                r#"{"name":"n","count":1,"price":1.5,"kind":"small"}"#,
                "price: must be a whole number, not a number with a fraction",
            ),
            (
                r#"{"name":"n","count":1,"price":1,"kind":"huge"}"#,
                "kind: must be one of: small or large",
            ),
            (
                r#"{"name":"n","count":1,"price":1,"kind":"small","tags":[1]}"#,
                "tags[0]: must be a string, not a number",
            ),
            (
                r#"{"name":"n","#,
                "body is not valid JSON: it ends too early",
            ),
            (r#"{"name" 1}"#, "body is not valid JSON (line 1, column 9)"),
        ];
        for (json, expected) in cases {
            let got = message(json);
            assert_eq!(got, expected, "{json}");
            assert!(!leaks_internals(&got), "{got}");
        }
    }
}
