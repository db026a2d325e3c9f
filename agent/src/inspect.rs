//! L3 on a proxied response: read the JSON answer of an operation that returns data
//! classes the caller may not see, mask those values or withhold the response, as the
//! decision ordered, and complete the request's decision record. Anything that cannot be
//! checked — not JSON, compressed, too large — is refused (fail closed); an answer the
//! upstream stalls or breaks off is its failure (504 or 502), and none of it is shown.

use crate::decide::{Decider, Inspected, ResponseDuty};
use crate::problem::Problem;
use axum::body::{Body, Bytes};
use axum::response::Response;
use http::header::{self, HeaderMap, HeaderValue};
use policy::inspect::{Inspection, inspect};
use serde_json::Value;

/// Larger responses are not read into memory to be inspected: they are refused.
pub const MAX_INSPECTED_BYTES: usize = 8 * 1024 * 1024;

/// Carries out `duty` on the upstream's `response` and answers what the caller gets.
pub async fn apply(decider: &Decider, duty: ResponseDuty, response: Response) -> Response {
    let status = response.status().as_u16();
    if !duty.fields.iter().any(|field| field.applies_to(status)) {
        decider.finish_inspected(duty, &Inspected::Clean).await;
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_INSPECTED_BYTES).await {
        Ok(bytes) => bytes,
        // Too large: refused, as anything else inspection cannot read.
        Err(error) if too_large(&error) => {
            tracing::warn!(%error, "a response to inspect was too large");
            decider
                .finish_inspected(duty, &Inspected::NotInspectable)
                .await;
            return Problem::new(502, "response_not_inspectable").response();
        }
        // The upstream stalled or broke off mid-answer: its failure (504 or 502, counted),
        // as when it gives no answer at all. The caller is shown nothing of it.
        Err(error) => {
            decider.finish_inspected(duty, &Inspected::Clean).await;
            return crate::proxy::unanswered(&decider.stats, &error);
        }
    };
    let (found, masked) = examine(&parts.headers, &bytes, status, &duty);
    let monitor = duty.monitor;
    decider.finish_inspected(duty, &found).await;
    let send_original = |parts| Response::from_parts(parts, Body::from(bytes.clone()));
    match found {
        Inspected::Clean => send_original(parts),
        _ if monitor => send_original(parts),
        Inspected::Masked => {
            let body = masked.unwrap_or_default();
            // The body changed: validators and digests of the original no longer hold.
            for stale in [header::ETAG, header::LAST_MODIFIED, header::CONTENT_LENGTH] {
                parts.headers.remove(stale);
            }
            parts.headers.remove("content-digest");
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            Response::from_parts(parts, Body::from(body))
        }
        Inspected::Withheld => Problem::new(403, "data_withheld").response(),
        Inspected::NotInspectable => Problem::new(502, "response_not_inspectable").response(),
    }
}

/// Whether reading a body failed at [`MAX_INSPECTED_BYTES`], not on the upstream's side.
fn too_large(error: &axum::Error) -> bool {
    crate::cause::<http_body_util::LengthLimitError>(error).is_some()
}

/// What the body holds, and the masked body when values were masked.
fn examine(
    headers: &HeaderMap,
    bytes: &Bytes,
    status: u16,
    duty: &ResponseDuty,
) -> (Inspected, Option<Vec<u8>>) {
    if bytes.is_empty() {
        return (Inspected::Clean, None);
    }
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let encoded = text(header::CONTENT_ENCODING)
        .is_some_and(|coding| !coding.trim().eq_ignore_ascii_case("identity"));
    if encoded || !text(header::CONTENT_TYPE).is_some_and(is_json) {
        return (Inspected::NotInspectable, None);
    }
    let Ok(mut document) = serde_json::from_slice::<Value>(bytes) else {
        return (Inspected::NotInspectable, None);
    };
    match inspect(&mut document, status, &duty.fields, &duty.mask, &duty.block) {
        Inspection::Clean => (Inspected::Clean, None),
        Inspection::Withheld(_) => (Inspected::Withheld, None),
        Inspection::Masked(_) => match serde_json::to_vec(&document) {
            Ok(masked) => (Inspected::Masked, Some(masked)),
            Err(_) => (Inspected::NotInspectable, None),
        },
    }
}

/// `application/json` and the `+json` types (`application/hal+json`), any parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types_are_recognised() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/problem+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/jsonp"));
        assert!(!is_json("text/json+html"));
    }
}
