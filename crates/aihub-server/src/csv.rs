//! CSV for the exports (audit log, usage): RFC 4180 fields, with spreadsheet formulas defused.

/// One RFC 4180 field. A value a spreadsheet would run as a formula (it starts with `=`, `+`,
/// `-`, `@`, a tab or a carriage return) gets a leading `'`, so opening an export cannot run
/// what someone typed into an e-mail or user-agent field.
pub fn csv_cell(buf: &mut Vec<u8>, value: &str) {
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = value.contains([',', '"', '\r', '\n']);
    if quote {
        buf.push(b'"');
    }
    if formula {
        buf.push(b'\'');
    }
    for part in value.split_inclusive('"') {
        buf.extend_from_slice(part.as_bytes());
        if part.ends_with('"') {
            buf.push(b'"');
        }
    }
    if quote {
        buf.push(b'"');
    }
}

/// One CSV line: the cells, comma-separated, ended by CRLF.
pub fn csv_line<S: AsRef<str>>(buf: &mut Vec<u8>, cells: &[S]) {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        csv_cell(buf, cell.as_ref());
    }
    buf.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(v: &str) -> String {
        let mut buf = Vec::new();
        csv_cell(&mut buf, v);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn csv_cells_are_quoted_and_defused() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell(""), "");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell(r#"{"a":"b"}"#), r#""{""a"":""b""}""#);
        assert_eq!(cell("line\r\nbreak"), "\"line\r\nbreak\"");
        assert_eq!(cell("=1+2"), "'=1+2");
        assert_eq!(cell("+1"), "'+1");
        assert_eq!(cell("-1"), "'-1");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(
            cell("=HYPERLINK(\"http://x\",\"y\")"),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""
        );
        assert_eq!(cell("a=b"), "a=b");
    }

    #[test]
    fn lines_are_comma_separated_and_crlf_ended() {
        let mut buf = Vec::new();
        csv_line(&mut buf, &["a", "=b", "c,d"]);
        assert_eq!(String::from_utf8(buf).unwrap(), "a,'=b,\"c,d\"\r\n");
    }
}
