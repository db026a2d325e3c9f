//! Building URLs: percent-encoding for paths and query values.

/// Percent-encodes everything but RFC 3986 unreserved characters and `/` (allowed as is in
/// both paths and query values).
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reserved_characters_are_encoded() {
        assert_eq!(super::percent_encode("/settings?tab=a&b"), "/settings%3Ftab%3Da%26b");
        assert_eq!(super::percent_encode("a b+é"), "a%20b%2B%C3%A9");
    }
}
