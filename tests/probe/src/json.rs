//! A minimal JSON writer: just enough for the probe's report.
//!
//! Objects keep insertion order, so the report reads in the order it was built.

use std::fmt::Write as _;

/// A JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Str(String),
    Array(Vec<Json>),
    Object(Object),
}

/// A JSON object whose keys keep the order in which they were inserted.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object(Vec<(String, Json)>);

impl Object {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder form of [`Object::insert`].
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Json>) -> Self {
        self.insert(key, value);
        self
    }

    /// Sets `key`, replacing an earlier value in place so keys stay unique.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Json>) {
        let key = key.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// How many members the object has.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Appends all of `other`'s members (replacing equal keys).
    pub fn extend(&mut self, other: Object) {
        for (key, value) in other.0 {
            self.insert(key, value);
        }
    }
}

impl Json {
    /// The compact JSON text of this value.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Json::UInt(n) => {
                let _ = write!(out, "{n}");
            }
            Json::Str(s) => write_string(out, s),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(Object(members)) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(out, key);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// Writes `s` as a quoted JSON string (RFC 8259 section 7).
///
/// Control characters must be escaped. DEL and U+2028/U+2029 need not be, but are, so that the
/// text stays on one line and safe to embed in JavaScript.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < '\u{20}' || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl From<bool> for Json {
    fn from(b: bool) -> Self {
        Json::Bool(b)
    }
}

impl From<i32> for Json {
    fn from(n: i32) -> Self {
        Json::Int(n.into())
    }
}

impl From<i64> for Json {
    fn from(n: i64) -> Self {
        Json::Int(n)
    }
}

impl From<u32> for Json {
    fn from(n: u32) -> Self {
        Json::Int(n.into())
    }
}

impl From<u64> for Json {
    fn from(n: u64) -> Self {
        Json::UInt(n)
    }
}

impl From<usize> for Json {
    fn from(n: usize) -> Self {
        // usize is at most 64 bits on every target the probe builds for.
        Json::UInt(n as u64)
    }
}

impl From<isize> for Json {
    fn from(n: isize) -> Self {
        // isize is at most 64 bits on every target the probe builds for.
        Json::Int(n as i64)
    }
}

impl From<&str> for Json {
    fn from(s: &str) -> Self {
        Json::Str(s.to_owned())
    }
}

impl From<String> for Json {
    fn from(s: String) -> Self {
        Json::Str(s)
    }
}

impl From<Object> for Json {
    fn from(o: Object) -> Self {
        Json::Object(o)
    }
}

impl<T: Into<Json>> From<Vec<T>> for Json {
    fn from(items: Vec<T>) -> Self {
        Json::Array(items.into_iter().map(Into::into).collect())
    }
}

impl<T: Into<Json>> From<Option<T>> for Json {
    fn from(value: Option<T>) -> Self {
        value.map_or(Json::Null, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(s: &str) -> String {
        Json::from(s).render()
    }

    #[test]
    fn plain_strings_pass_through() {
        assert_eq!(quoted("hello /etc/hosts"), r#""hello /etc/hosts""#);
        assert_eq!(quoted(""), r#""""#);
        assert_eq!(quoted("päth ✓ 𝄞"), "\"päth ✓ 𝄞\"");
    }

    #[test]
    fn quotes_and_backslashes_are_escaped() {
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quoted(r"\"), r#""\\""#);
        // The slash needs no escape.
        assert_eq!(quoted("a/b"), r#""a/b""#);
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(quoted("a\nb\rc\td"), r#""a\nb\rc\td""#);
        assert_eq!(quoted("\u{8}\u{c}"), r#""\b\f""#);
        assert_eq!(quoted("\0"), r#""\u0000""#);
        assert_eq!(quoted("\u{1}\u{1f}"), r#""\u0001\u001f""#);
        assert_eq!(quoted("\u{7f}"), r#""\u007f""#);
        assert_eq!(quoted("\u{2028}\u{2029}"), r#""\u2028\u2029""#);
        // Nothing below U+0020 survives unescaped.
        for c in (0u8..0x20).map(char::from) {
            let out = quoted(&c.to_string());
            assert!(out.bytes().all(|b| b >= 0x20), "{c:?} -> {out:?}");
        }
    }

    #[test]
    fn lossy_non_utf8_input_stays_valid() {
        let s = String::from_utf8_lossy(b"a\xffb");
        assert_eq!(quoted(&s), "\"a\u{fffd}b\"");
    }

    #[test]
    fn scalars() {
        assert_eq!(Json::Null.render(), "null");
        assert_eq!(Json::from(true).render(), "true");
        assert_eq!(Json::from(false).render(), "false");
        assert_eq!(Json::from(-12i32).render(), "-12");
        assert_eq!(Json::from(u64::MAX).render(), "18446744073709551615");
        assert_eq!(Json::from(None::<i32>).render(), "null");
    }

    #[test]
    fn nested_values_keep_insertion_order() {
        let value = Object::new()
            .with("z", 1i32)
            .with("a", vec!["x", "y\""])
            .with("m", Object::new().with("ok", false))
            .with("e", Vec::<Json>::new());
        assert_eq!(
            Json::from(value).render(),
            r#"{"z":1,"a":["x","y\""],"m":{"ok":false},"e":[]}"#
        );
    }

    #[test]
    fn keys_are_escaped_and_unique() {
        let mut o = Object::new().with("a\"b", 1i32).with("k", 1i32);
        o.insert("k", 2i32);
        assert_eq!(Json::from(o).render(), r#"{"a\"b":1,"k":2}"#);
    }
}
