//! Built-in data classes and how fields are assigned to them from an OpenAPI schema: an
//! explicit `x-data-class`, then the field's `format`, then its name. The result says,
//! per operation, which classes it receives and returns and in which fields, so the
//! inventory can show where personal data flows. An organisation's own classes (see
//! `custom_classes`) are matched by field name after `x-data-class` and before the
//! built-in rules: they are the more specific knowledge.

use crate::DataClassHit;
use serde_json::Value;
use std::collections::HashSet;

/// Every built-in class, as stored and shown.
pub use crate::model::BUILT_IN_CLASSES as BUILT_IN;

/// How deep a schema is followed; real documents nest objects far less.
const MAX_DEPTH: usize = 12;
/// Field hits kept per operation, so a pathological schema cannot bloat a row.
const MAX_HITS: usize = 200;

/// Field names (lower case, without `_`, `-` and spaces) that mean a class.
const NAMES: &[(&str, &[&str])] = &[
    ("email", &["email", "emailaddress", "mail"]),
    ("phone", &["phone", "phonenumber", "mobile", "mobilenumber", "msisdn", "telephone", "tel", "fax"]),
    (
        "person_name",
        &["firstname", "lastname", "fullname", "givenname", "familyname", "surname", "middlename", "legalname", "cardholdername", "accountholdername"],
    ),
    (
        "postal_address",
        &["address", "streetaddress", "street", "addressline1", "addressline2", "postcode", "postalcode", "zip", "zipcode", "billingaddress", "shippingaddress"],
    ),
    ("date_of_birth", &["dob", "dateofbirth", "birthdate", "birthday"]),
    (
        "national_id",
        &["ssn", "socialsecuritynumber", "nationalid", "nationalidentifier", "nin", "taxid", "tin", "passportnumber", "driverslicense", "driverlicensenumber"],
    ),
    ("payment_card", &["cardnumber", "pan", "cvv", "cvc", "cvv2", "creditcard", "creditcardnumber", "expirymonth", "expiryyear"]),
    ("bank_account", &["iban", "accountnumber", "bankaccount", "bankaccountnumber", "routingnumber", "sortcode", "bic", "swift", "swiftcode"]),
    ("health", &["diagnosis", "medicalrecord", "medicalcondition", "bloodtype", "prescription", "healthcondition", "allergies"]),
    (
        "credentials",
        &["password", "passwd", "secret", "clientsecret", "apikey", "accesstoken", "refreshtoken", "privatekey", "pin", "otp", "sessiontoken"],
    ),
    ("precise_location", &["latitude", "longitude", "lat", "lng", "lon", "geolocation", "coordinates", "gps"]),
    ("ip_address", &["ip", "ipaddress", "clientip", "remoteaddr", "remoteip"]),
];

pub(crate) fn normalised(name: &str) -> String {
    name.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// A custom class as the classifier uses it: normalised keywords and compiled patterns.
#[derive(Clone, Debug)]
pub struct CustomRule {
    pub class: String,
    pub keywords: Vec<String>,
    pub patterns: Vec<regex::Regex>,
}

impl CustomRule {
    fn matches(&self, name: &str, key: &str) -> bool {
        self.keywords.iter().any(|keyword| keyword == key) || self.patterns.iter().any(|pattern| pattern.is_match(name))
    }
}

/// The class a field belongs to, if any.
fn classify(name: &str, schema: &Value, custom: &[CustomRule]) -> Option<String> {
    if let Some(explicit) = schema.get("x-data-class").and_then(Value::as_str) {
        return Some(explicit.trim().to_owned()).filter(|class| !class.is_empty());
    }
    let key = normalised(name);
    if let Some(rule) = custom.iter().find(|rule| rule.matches(name, &key)) {
        return Some(rule.class.clone());
    }
    match schema.get("format").and_then(Value::as_str) {
        Some("email" | "idn-email") => return Some("email".into()),
        Some("ipv4" | "ipv6") => return Some("ip_address".into()),
        Some("password") => return Some("credentials".into()),
        Some("date") if key.contains("birth") => return Some("date_of_birth".into()),
        _ => {}
    }
    NAMES.iter().find(|(_, names)| names.contains(&key.as_str())).map(|(class, _)| (*class).to_owned())
}

/// Walks schemas, resolving `#/components/...` references against `components`.
struct Walker<'a> {
    components: &'a Value,
    custom: &'a [CustomRule],
    hits: Vec<DataClassHit>,
    seen: HashSet<(String, String)>,
}

impl<'a> Walker<'a> {
    fn resolve(&self, mut schema: &'a Value) -> &'a Value {
        for _ in 0..16 {
            let Some(target) = schema.get("$ref").and_then(Value::as_str) else { return schema };
            let Some(pointer) = target.strip_prefix("#/components") else { return &Value::Null };
            match self.components.pointer(pointer) {
                Some(found) => schema = found,
                None => return &Value::Null,
            }
        }
        &Value::Null
    }

    fn hit(&mut self, class: String, direction: &str, field: String) {
        if self.hits.len() < MAX_HITS && self.seen.insert((class.clone(), field.clone())) {
            self.hits.push(DataClassHit { class, direction: direction.to_owned(), field });
        }
    }

    /// Visits a schema found at `field` (a readable path like `body.customer.email`).
    fn schema(&mut self, schema: &'a Value, direction: &str, field: &str, depth: usize, stack: &mut Vec<*const Value>) {
        let schema = self.resolve(schema);
        if depth > MAX_DEPTH || stack.contains(&(schema as *const Value)) {
            return;
        }
        stack.push(schema as *const Value);
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (name, property) in properties {
                let property = self.resolve(property);
                let path = format!("{field}.{name}");
                if let Some(class) = classify(name, property, self.custom) {
                    self.hit(class, direction, path.clone());
                }
                self.schema(property, direction, &path, depth + 1, stack);
            }
        }
        if let Some(items) = schema.get("items") {
            self.schema(items, direction, &format!("{field}[]"), depth + 1, stack);
        }
        for combinator in ["allOf", "anyOf", "oneOf"] {
            for part in schema.get(combinator).and_then(Value::as_array).into_iter().flatten() {
                self.schema(part, direction, field, depth + 1, stack);
            }
        }
        if let Some(extra) = schema.get("additionalProperties").filter(|v| v.is_object()) {
            self.schema(extra, direction, &format!("{field}.*"), depth + 1, stack);
        }
        stack.pop();
    }

    fn content(&mut self, content: Option<&'a Value>, direction: &str, field: &str) {
        for media in content.and_then(Value::as_object).into_iter().flat_map(|m| m.values()) {
            if let Some(schema) = media.get("schema") {
                self.schema(schema, direction, field, 0, &mut Vec::new());
            }
        }
    }
}

/// The classes an operation receives (parameters, request body) and returns (successful
/// and default responses), with the fields they were found in.
pub fn classify_operation(
    parameters: &Value,
    request_body: &Value,
    responses: &Value,
    components: &Value,
    custom: &[CustomRule],
) -> Vec<DataClassHit> {
    let mut walker = Walker { components, custom, hits: Vec::new(), seen: HashSet::new() };
    for parameter in parameters.as_array().into_iter().flatten() {
        let name = parameter.get("name").and_then(Value::as_str).unwrap_or_default();
        let place = parameter.get("in").and_then(Value::as_str).unwrap_or("query");
        let field = format!("{place}.{name}");
        let schema = parameter.get("schema").unwrap_or(&Value::Null);
        let resolved = walker.resolve(schema);
        let explicit = parameter.get("x-data-class").map(|class| serde_json::json!({"x-data-class": class}));
        if let Some(class) = classify(name, explicit.as_ref().unwrap_or(resolved), custom) {
            walker.hit(class, "request", field.clone());
        }
        walker.schema(schema, "request", &field, 1, &mut Vec::new());
    }
    walker.content(request_body.get("content"), "request", "body");
    for (status, response) in responses.as_object().into_iter().flatten() {
        if status.starts_with('2') || status == "default" {
            walker.content(response.get("content"), "response", &format!("{status}.body"));
        }
    }
    walker.hits
}

/// The distinct classes among hits, sorted.
pub fn classes_of(hits: &[DataClassHit]) -> Vec<String> {
    let mut classes: Vec<String> = hits.iter().map(|hit| hit.class.clone()).collect();
    classes.sort();
    classes.dedup();
    classes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_classified_by_extension_format_and_name() {
        let components = json!({"schemas": {
            "Customer": {"type": "object", "properties": {
                "contact": {"type": "string", "format": "email"},
                "first_name": {"type": "string"},
                "born": {"type": "string", "format": "date", "x-data-class": "date_of_birth"},
                "card": {"$ref": "#/components/schemas/Card"},
                "friends": {"type": "array", "items": {"$ref": "#/components/schemas/Customer"}},
            }},
            "Card": {"type": "object", "properties": {"cardNumber": {"type": "string"}, "brand": {"type": "string"}}},
        }});
        let responses = json!({"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Customer"}}}},
                               "404": {"content": {"application/json": {"schema": {"properties": {"email": {}}}}}}});
        let parameters = json!([{"name": "X-Forwarded-For", "in": "header", "x-data-class": "ip_address", "schema": {"type": "string"}},
                                {"name": "phone", "in": "query", "schema": {"type": "string"}}]);
        let hits = classify_operation(&parameters, &Value::Null, &responses, &components, &[]);
        let found: Vec<(String, String, String)> = hits.iter().map(|h| (h.class.clone(), h.direction.clone(), h.field.clone())).collect();
        assert!(found.contains(&("email".into(), "response".into(), "200.body.contact".into())), "{found:?}");
        assert!(found.contains(&("person_name".into(), "response".into(), "200.body.first_name".into())));
        assert!(found.contains(&("date_of_birth".into(), "response".into(), "200.body.born".into())));
        assert!(found.contains(&("payment_card".into(), "response".into(), "200.body.card.cardNumber".into())));
        assert!(found.contains(&("ip_address".into(), "request".into(), "header.X-Forwarded-For".into())));
        assert!(found.contains(&("phone".into(), "request".into(), "query.phone".into())));
        assert!(!found.iter().any(|(_, _, field)| field.starts_with("404")), "error bodies are not data flows");
        assert!(!found.iter().any(|(_, _, field)| field.contains("friends[]")), "a cycle is not followed: {found:?}");
        assert_eq!(classes_of(&hits), ["date_of_birth", "email", "ip_address", "payment_card", "person_name", "phone"]);
    }

    #[test]
    fn plain_fields_are_left_alone() {
        let responses = json!({"200": {"content": {"application/json": {"schema": {"properties": {"name": {}, "id": {}, "status": {}}}}}}});
        assert!(classify_operation(&json!([]), &Value::Null, &responses, &Value::Null, &[]).is_empty());
    }

    #[test]
    fn custom_classes_match_keywords_and_patterns_before_built_ins() {
        let responses = json!({"200": {"content": {"application/json": {"schema": {"properties": {
            "loyalty-number": {}, "memberCard7": {}, "email": {}, "status": {}}}}}}});
        let custom = [CustomRule {
            class: "loyalty_number".into(),
            keywords: vec![normalised("loyalty_number")],
            patterns: vec![regex::Regex::new("^memberCard[0-9]+$").unwrap()],
        }];
        let hits = classify_operation(&json!([]), &Value::Null, &responses, &Value::Null, &custom);
        let found: Vec<(&str, &str)> = hits.iter().map(|h| (h.class.as_str(), h.field.as_str())).collect();
        assert_eq!(
            found,
            [("email", "200.body.email"), ("loyalty_number", "200.body.loyalty-number"), ("loyalty_number", "200.body.memberCard7")]
        );
    }
}
