//! Where one register sits in a register file laid out by a gdb target
//! description: gdb numbers the `<reg>` elements in document order (a
//! `regnum` attribute restarts the count) and the file packs them in that
//! order, `bitsize / 8` bytes each — which is all single-register access
//! (`p`/`P`) needs to know about any architecture.

/// `(offset, size)` in bytes of gdb register number `regnum` in the register
/// file `xml` describes, or `None` if it describes no such register.
pub fn register_span(xml: &str, regnum: usize) -> Option<(usize, usize)> {
    let mut offset = 0;
    let mut next = 0;
    for tag in xml.split("<reg").skip(1) {
        // `<reg` also begins no other element of a target description, but
        // be strict: the element name must end here.
        if !tag.starts_with([' ', '\t', '\n', '\r']) {
            continue;
        }
        let tag = &tag[..tag.find('>')?];
        let n = attribute(tag, "regnum").map_or(Some(next), |v| v.parse().ok())?;
        let size = attribute(tag, "bitsize")?.parse::<usize>().ok()? / 8;
        if n == regnum {
            return Some((offset, size));
        }
        offset += size;
        next = n + 1;
    }
    None
}

/// The value of attribute `key` in the inside of an element's start tag.
fn attribute<'a>(tag: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = tag;
    loop {
        let at = rest.find(key)?;
        let before_ok = rest[..at].ends_with([' ', '\t', '\n', '\r']);
        let after = rest[at + key.len()..].trim_start();
        if let Some(value) = after.strip_prefix('=').map(str::trim_start).filter(|_| before_ok) {
            let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
            let value = &value[1..];
            return Some(&value[..value.find(quote)?]);
        }
        rest = &rest[at + key.len()..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<target><feature name="a">
        <reg name="r0" bitsize="64" type="int" regnum="0"/><reg name="r1" bitsize="32"/>
        <reg name="v" bitsize="128" type="uint128"/>
        </feature><feature name="b"><reg name='s' bitsize = "64" group="system"/></feature>
        <feature name="c"><reg name="late" bitsize="16" regnum="40"/><reg name="after" bitsize="8"/></feature></target>"#;

    #[test]
    fn registers_are_packed_in_document_order() {
        assert_eq!(register_span(XML, 0), Some((0, 8)));
        assert_eq!(register_span(XML, 1), Some((8, 4)));
        assert_eq!(register_span(XML, 2), Some((12, 16)));
        assert_eq!(register_span(XML, 3), Some((28, 8)), "single quotes, spaces around =");
        assert_eq!(register_span(XML, 4), None, "regnum skips 4..40");
        assert_eq!(register_span(XML, 40), Some((36, 2)));
        assert_eq!(register_span(XML, 41), Some((38, 1)));
        assert_eq!(register_span(XML, 42), None);
        assert_eq!(register_span("<target><regs/></target>", 0), None, "only <reg> elements count");
        assert_eq!(register_span("<reg name=\"x\" bitsize=\"wide\"/>", 0), None);
    }

    #[test]
    fn an_attribute_is_found_by_its_whole_name() {
        assert_eq!(attribute(r#" name="xbitsize" bitsize="8""#, "bitsize"), Some("8"));
        assert_eq!(attribute(r#" mybitsize="9" bitsize="8""#, "bitsize"), Some("8"));
        assert_eq!(attribute(r#" name="a""#, "bitsize"), None);
    }
}
