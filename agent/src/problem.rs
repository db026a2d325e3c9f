//! Denials as RFC 9457 `application/problem+json`: `{type, title, status, detail, code}`.
//! The code is the evaluator's stable reason code; the detail is a fixed sentence per code,
//! never the evaluator's own text, which names networks, roles and routes a caller should
//! not learn from a refusal.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

pub const CONTENT_TYPE: &str = "application/problem+json";

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
}

impl Problem {
    /// The problem for a denial with `status` and reason `code`.
    pub fn new(status: u16, code: &str) -> Problem {
        let status = StatusCode::from_u16(status)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .unwrap_or(StatusCode::FORBIDDEN);
        Problem {
            kind: format!("urn:palisade:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Refused").to_owned(),
            status: status.as_u16(),
            detail: detail(code).to_owned(),
            code: code.to_owned(),
        }
    }

    /// A problem whose detail says what is wrong with the caller's own input (a request
    /// contract's finding), instead of the code's fixed sentence.
    pub fn with_detail(status: u16, code: &str, detail: String) -> Problem {
        Problem { detail, ..Problem::new(status, code) }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain strings and a number cannot fail; an empty body would still be
        // a well-formed refusal.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The response, status and content type set.
    pub fn response(&self) -> Response {
        let mut response = Response::new(Body::from(self.to_bytes()));
        *response.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::FORBIDDEN);
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// A sentence a caller may read, per reason code.
fn detail(code: &str) -> &'static str {
    match code {
        "non_canonical_path" => "The request path is not in canonical form.",
        "undeclared_route" => "The API does not declare this operation.",
        "source_not_allowed" => "Requests from this network may not reach this operation.",
        "identity_not_allowed" => "The caller's service identity may not reach this operation.",
        "authentication_undeclared" => {
            "This operation cannot be called until its authentication is declared."
        }
        "unauthenticated" => "Credentials are required.",
        "invalid_token" => "The bearer token is invalid or has expired.",
        "credential_not_accepted" => {
            "The credentials presented are not accepted for this operation."
        }
        "missing_role"
        | "missing_scope"
        | "claim_mismatch"
        | "client_app_not_allowed"
        | "not_object_owner" => "The caller is not allowed to perform this operation.",
        "risk_too_high" => "The request was refused.",
        "device_required" => "A registered device is required.",
        "consent_required" => "The data subject's consent does not cover this request.",
        "rate_limited" => "Too many requests; retry later.",
        "no_verified_bundle" => "The gateway has no verified policy yet.",
        "upstream_unavailable" => "The service is unavailable.",
        "upstream_timeout" => "The service did not answer in time.",
        "request_timeout" => "The request did not arrive in time.",
        "bad_request" => "The request could not be read.",
        "data_withheld" => "The response holds data the caller may not receive.",
        "response_not_inspectable" => {
            "The response could not be checked for data the caller may not receive."
        }
        "response_inspection_unavailable" => {
            "This operation's responses must be checked, which this gateway cannot do."
        }
        "request_inspection_unavailable" => {
            "This operation's request bodies must be checked, which this gateway cannot do."
        }
        "invalid_api_key" => "The API key is invalid, revoked or expired.",
        "invalid_signature" => "The request signature is invalid, expired or replayed.",
        "contract_unavailable" => "The request could not be checked against its contract.",
        _ => "The request was refused.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_has_every_member_and_no_internal_detail() {
        let problem = Problem::new(403, "source_not_allowed");
        let body: serde_json::Value = serde_json::from_slice(&problem.to_bytes()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "type": "urn:palisade:problem:source_not_allowed",
                "title": "Forbidden",
                "status": 403,
                "detail": "Requests from this network may not reach this operation.",
                "code": "source_not_allowed",
            })
        );
        let response = problem.response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        // A status that is not an error never turns a refusal into a success.
        assert_eq!(Problem::new(200, "x").status, 403);
        assert_eq!(Problem::new(429, "rate_limited").title, "Too Many Requests");
    }
}
