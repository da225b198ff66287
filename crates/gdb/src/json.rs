//! A tiny one-line JSON writer for the `--json` forms of the monitor
//! commands: objects, arrays, strings, integers — all the stub ever emits.
//! Hand-written because the hypervisor needs only this much, in `no_std`.

use alloc::string::String;
use core::fmt::Write;

/// Builds one line of JSON into a `String`. Commas are inserted
/// automatically: every value or key written after another one in the same
/// container is preceded by `,`.
pub struct Json {
    out: String,
    /// Whether the next value in the current container needs a comma.
    need_comma: bool,
}

impl Default for Json {
    fn default() -> Self {
        Self::new()
    }
}

impl Json {
    /// An empty document.
    pub fn new() -> Self {
        Json { out: String::new(), need_comma: false }
    }

    /// The text written so far.
    pub fn finish(self) -> String {
        self.out
    }

    fn sep(&mut self) {
        if self.need_comma {
            self.out.push(',');
        }
        self.need_comma = true;
    }

    /// `{`
    pub fn begin_obj(&mut self) -> &mut Self {
        self.sep();
        self.out.push('{');
        self.need_comma = false;
        self
    }

    /// `}`
    pub fn end_obj(&mut self) -> &mut Self {
        self.out.push('}');
        self.need_comma = true;
        self
    }

    /// `[`
    pub fn begin_arr(&mut self) -> &mut Self {
        self.sep();
        self.out.push('[');
        self.need_comma = false;
        self
    }

    /// `]`
    pub fn end_arr(&mut self) -> &mut Self {
        self.out.push(']');
        self.need_comma = true;
        self
    }

    /// `"key":` — the value follows with one of the value methods.
    pub fn key(&mut self, k: &str) -> &mut Self {
        self.sep();
        push_str_lit(&mut self.out, k);
        self.out.push(':');
        self.need_comma = false;
        self
    }

    /// A string value.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.sep();
        push_str_lit(&mut self.out, s);
        self
    }

    /// An unsigned integer value.
    pub fn uint(&mut self, v: u64) -> &mut Self {
        self.sep();
        let _ = write!(self.out, "{v}");
        self
    }

    /// A signed integer value.
    pub fn int(&mut self, v: i64) -> &mut Self {
        self.sep();
        let _ = write!(self.out, "{v}");
        self
    }

    /// `true` / `false`.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.sep();
        self.out.push_str(if v { "true" } else { "false" });
        self
    }

    /// `null`.
    pub fn null(&mut self) -> &mut Self {
        self.sep();
        self.out.push_str("null");
        self
    }

    /// `"key":"value"`.
    pub fn kv_str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k).str(v)
    }

    /// `"key":value` for an unsigned integer.
    pub fn kv_uint(&mut self, k: &str, v: u64) -> &mut Self {
        self.key(k).uint(v)
    }

    /// `"key":value` or `"key":null`.
    pub fn kv_opt_uint(&mut self, k: &str, v: Option<u64>) -> &mut Self {
        self.key(k);
        match v {
            Some(v) => self.uint(v),
            None => self.null(),
        }
    }
}

fn push_str_lit(out: &mut String, s: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_and_escapes() {
        let mut j = Json::new();
        j.begin_obj().kv_uint("a", 1).key("b").begin_arr().uint(2).str("x\"y\n").null().end_arr();
        j.key("c").begin_obj().end_obj().kv_opt_uint("d", None).end_obj();
        assert_eq!(j.finish(), r#"{"a":1,"b":[2,"x\"y\n",null],"c":{},"d":null}"#);
    }
}
