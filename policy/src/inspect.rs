//! L3 response inspection: where each declared data class sits in an operation's JSON
//! responses, and what an agent does with a response whose caller may not see some of
//! them — mask the values, or withhold the whole response. Pure, so the agent and the
//! tests share one implementation.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a masked string becomes; any other masked value becomes `null`.
pub const MASK: &str = "***";

/// One place a data class is returned: `200.body.items[].iban` parsed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResponseField {
    pub class: String,
    /// `200`, `2XX` or `default`.
    pub status: String,
    /// From the body's root to the value.
    pub path: Vec<FieldStep>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldStep {
    /// A named member of an object.
    Key(String),
    /// Every element of an array (`[]`).
    Each,
    /// Every member of an object (`.*`, from `additionalProperties`).
    AnyKey,
}

impl ResponseField {
    /// Reads the inventory's notation for a response field (`200.body.items[].iban`,
    /// `default.body.*.email`); `None` for anything else (request fields included).
    pub fn parse(class: &str, field: &str) -> Option<ResponseField> {
        let (status, rest) = field.split_once('.')?;
        let valid_status = status == "default"
            || (status.len() == 3 && status.bytes().all(|b| b.is_ascii_digit()))
            || (status.len() == 3 && status.as_bytes()[0].is_ascii_digit() && status[1..].eq_ignore_ascii_case("XX"));
        let mut rest = rest.strip_prefix("body")?;
        if !valid_status {
            return None;
        }
        let mut path = Vec::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("[]") {
                path.push(FieldStep::Each);
                rest = after;
            } else if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                let name = &after[..end];
                if name.is_empty() {
                    return None;
                }
                path.push(if name == "*" { FieldStep::AnyKey } else { FieldStep::Key(name.to_owned()) });
                rest = &after[end..];
            } else {
                return None;
            }
        }
        Some(ResponseField { class: class.to_owned(), status: status.to_ascii_uppercase(), path })
    }

    /// Whether the field is declared for a response with this status. `default` covers
    /// every status: a response the document does not describe may still carry the data.
    pub fn applies_to(&self, status: u16) -> bool {
        match self.status.as_bytes() {
            b"DEFAULT" => true,
            [class, b'X', b'X'] => status / 100 == u16::from(class - b'0'),
            _ => self.status.parse() == Ok(status),
        }
    }
}

/// What inspection did to a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inspection {
    /// Nothing the caller may not see was present.
    Clean,
    /// These classes were present and their values are masked in the body.
    Masked(Vec<String>),
    /// These classes were present and block the response; the body must not be sent.
    Withheld(Vec<String>),
}

/// Inspects a JSON response body: classes in `block` that are present withhold the
/// response (the body is left as it was, for the caller to discard); otherwise values of
/// classes in `mask` are masked in place. Absent and `null` values are not "present".
pub fn inspect(body: &mut Value, status: u16, fields: &[ResponseField], mask: &[String], block: &[String]) -> Inspection {
    let applicable = |classes: &[String]| -> Vec<&ResponseField> {
        fields.iter().filter(|field| field.applies_to(status) && classes.contains(&field.class)).collect()
    };
    let mut withheld = Vec::new();
    for field in applicable(block) {
        let mut present = false;
        visit(body, &field.path, &mut |_| present = true);
        if present && !withheld.contains(&field.class) {
            withheld.push(field.class.clone());
        }
    }
    if !withheld.is_empty() {
        withheld.sort();
        return Inspection::Withheld(withheld);
    }
    let mut masked = Vec::new();
    for field in applicable(mask) {
        let mut present = false;
        visit(body, &field.path, &mut |value| {
            present = true;
            *value = if value.is_string() { Value::String(MASK.to_owned()) } else { Value::Null };
        });
        if present && !masked.contains(&field.class) {
            masked.push(field.class.clone());
        }
    }
    if masked.is_empty() {
        Inspection::Clean
    } else {
        masked.sort();
        Inspection::Masked(masked)
    }
}

/// Calls `found` on every non-null value at `path` under `value`.
fn visit(value: &mut Value, path: &[FieldStep], found: &mut dyn FnMut(&mut Value)) {
    let Some((step, rest)) = path.split_first() else {
        if !value.is_null() {
            found(value);
        }
        return;
    };
    match (step, value) {
        (FieldStep::Key(name), Value::Object(members)) => {
            if let Some(member) = members.get_mut(name) {
                visit(member, rest, found);
            }
        }
        (FieldStep::AnyKey, Value::Object(members)) => members.values_mut().for_each(|member| visit(member, rest, found)),
        (FieldStep::Each, Value::Array(items)) => items.iter_mut().for_each(|item| visit(item, rest, found)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(class: &str, at: &str) -> ResponseField {
        ResponseField::parse(class, at).unwrap()
    }

    #[test]
    fn the_inventory_notation_is_read_and_request_fields_are_not() {
        assert_eq!(
            field("iban", "200.body.items[].iban").path,
            [FieldStep::Key("items".into()), FieldStep::Each, FieldStep::Key("iban".into())]
        );
        assert_eq!(field("email", "default.body.*.email").path, [FieldStep::AnyKey, FieldStep::Key("email".into())]);
        assert_eq!(field("email", "200.body[].email").path, [FieldStep::Each, FieldStep::Key("email".into())]);
        for other in ["query.phone", "body.customer.email", "200.headers.x", "200.body..x", "abc.body.x", "200.bodyx", "2X.body.a"] {
            assert_eq!(ResponseField::parse("email", other), None, "{other}");
        }
    }

    #[test]
    fn statuses_match_exactly_by_class_or_by_default() {
        assert!(field("e", "200.body.e").applies_to(200));
        assert!(!field("e", "200.body.e").applies_to(201));
        assert!(field("e", "2XX.body.e").applies_to(204));
        assert!(field("e", "2xx.body.e").applies_to(299));
        assert!(!field("e", "2XX.body.e").applies_to(404));
        assert!(field("e", "default.body.e").applies_to(500));
    }

    #[test]
    fn masked_values_keep_the_shape_of_the_document() {
        let fields = [field("email", "200.body.items[].email"), field("iban", "200.body.items[].bank.iban"), field("phone", "200.body.phone")];
        let mut body = json!({"items": [{"email": "a@x.org", "bank": {"iban": 12345}, "name": "a"}, {"email": null, "name": "b"}], "total": 2});
        let outcome = inspect(&mut body, 200, &fields, &["email".into(), "iban".into(), "phone".into()], &[]);
        assert_eq!(outcome, Inspection::Masked(vec!["email".into(), "iban".into()]), "phone is absent, so not reported");
        assert_eq!(
            body,
            json!({"items": [{"email": MASK, "bank": {"iban": null}, "name": "a"}, {"email": null, "name": "b"}], "total": 2})
        );
    }

    #[test]
    fn a_present_blocked_class_withholds_the_response_and_an_absent_one_does_not() {
        let fields = [field("payment_card", "200.body.card"), field("email", "200.body.email")];
        let mut with_card = json!({"card": "4111", "email": "a@x.org"});
        assert_eq!(
            inspect(&mut with_card, 200, &fields, &["email".into()], &["payment_card".into()]),
            Inspection::Withheld(vec!["payment_card".into()])
        );
        let mut without = json!({"card": null, "email": "a@x.org"});
        assert_eq!(
            inspect(&mut without, 200, &fields, &["email".into()], &["payment_card".into()]),
            Inspection::Masked(vec!["email".into()])
        );
        let mut other_status = json!({"card": "4111"});
        assert_eq!(inspect(&mut other_status, 404, &fields, &[], &["payment_card".into()]), Inspection::Clean);
    }

    #[test]
    fn unexpected_shapes_are_passed_over_not_panicked_on() {
        let fields = [field("email", "200.body.items[].email"), field("email", "200.body.*.email")];
        for mut body in [json!("text"), json!([1, 2]), json!({"items": {"email": "x"}}), json!({"items": [1, "a", null]}), Value::Null] {
            let _ = inspect(&mut body, 200, &fields, &["email".into()], &[]);
        }
        let mut keyed = json!({"a": {"email": "x"}, "b": 3});
        assert_eq!(inspect(&mut keyed, 200, &fields, &["email".into()], &[]), Inspection::Masked(vec!["email".into()]));
        assert_eq!(keyed, json!({"a": {"email": MASK}, "b": 3}));
    }
}
