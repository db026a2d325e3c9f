//! Checks shared by every free-text name users type (team, token and display names).

use crate::StoreError;

/// Trims `text` and checks it is non-empty, at most `max_chars` long and free of control
/// characters; `field` names it in the error.
pub(crate) fn clean_name(field: &'static str, text: &str, max_chars: usize) -> Result<String, StoreError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(StoreError::invalid(field, "is required"));
    }
    if text.chars().count() > max_chars {
        return Err(StoreError::invalid(field, "is too long"));
    }
    if text.chars().any(char::is_control) {
        return Err(StoreError::invalid(field, "must not contain control characters"));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::clean_name;

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(clean_name("name", " Payments ", 64).unwrap(), "Payments");
        assert!(clean_name("name", "  ", 64).is_err());
        assert!(clean_name("name", &"n".repeat(65), 64).is_err());
        assert!(clean_name("name", "ci\n", 64).is_ok(), "trailing newline is trimmed");
        assert!(clean_name("name", "c\u{7}i", 64).is_err());
    }
}
