//! Matching a request path to a route. Paths are taken only in canonical form: anything
//! a server or proxy might read differently from us (`//`, `.` and `..` segments,
//! percent-encoded characters that need no encoding, encoded `/`, matrix parameters,
//! a trailing `/`) is refused before matching, so no rule can be bypassed by spelling the
//! same path another way. Matching walks a tree built once per bundle, so its cost
//! depends on the path's length, not on how many APIs the bundle holds.

use crate::model::{CompiledPolicy, Route, Segment};
use std::borrow::Cow;
use std::collections::HashMap;

/// Why a path was refused before matching.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with /")]
    NotAbsolute,
    #[error("the path has an empty segment (// or a trailing /)")]
    EmptySegment,
    #[error("the path has a . or .. segment")]
    DotSegment,
    #[error("the path has a matrix parameter (;)")]
    MatrixParameter,
    #[error("the path has a bad or needless percent-encoding")]
    Encoding,
}

/// The decoded segments of a canonical path (borrowed from it where nothing is encoded).
pub fn canonical_segments(path: &str) -> Result<Vec<Cow<'_, str>>, PathError> {
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    let Some(rest) = path.strip_prefix('/') else { return Err(PathError::NotAbsolute) };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    rest.split('/').map(decode_segment).collect()
}

fn decode_segment(segment: &str) -> Result<Cow<'_, str>, PathError> {
    if segment.is_empty() {
        return Err(PathError::EmptySegment);
    }
    if segment.contains(';') {
        return Err(PathError::MatrixParameter);
    }
    if !segment.contains('%') {
        return match segment {
            "." | ".." => Err(PathError::DotSegment),
            _ => Ok(Cow::Borrowed(segment)),
        };
    }
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = bytes.get(index + 1..index + 3).ok_or(PathError::Encoding)?;
            let value = std::str::from_utf8(hex).ok().and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or(PathError::Encoding)?;
            // Unreserved characters are never encoded by a well-behaved client, and an
            // encoded `/`, `\` or `%` or a control byte is read differently by different
            // servers: either is a spelling trick.
            let unreserved = value.is_ascii_alphanumeric() || b"-._~".contains(&value);
            if unreserved || matches!(value, b'/' | b'\\' | b'%') || value < 0x20 || value == 0x7f {
                return Err(PathError::Encoding);
            }
            decoded.push(value);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    let text = String::from_utf8(decoded).map_err(|_| PathError::Encoding)?;
    if text == "." || text == ".." {
        return Err(PathError::DotSegment);
    }
    Ok(Cow::Owned(text))
}

#[derive(Default, Debug)]
struct Node {
    literals: HashMap<String, Node>,
    parameter: Option<Box<Node>>,
    /// Index into the method's route list.
    route: Option<usize>,
}

/// A compiled policy with its route trees, ready to evaluate against.
#[derive(Debug)]
pub struct Prepared {
    pub policy: CompiledPolicy,
    /// By API id, then method (looked up with the request's `&str`, no key built).
    trees: HashMap<i64, HashMap<String, Node>>,
    /// Each operation's allowed source networks, parsed once rather than per request.
    networks: HashMap<i64, Vec<ipnet::IpNet>>,
}

/// A matched route and the values of its path parameters.
#[derive(Debug, PartialEq)]
pub struct Matched<'a> {
    pub route: &'a Route,
    pub parameters: Vec<(&'a str, String)>,
}

impl Prepared {
    pub fn new(policy: CompiledPolicy) -> Prepared {
        let mut trees: HashMap<i64, HashMap<String, Node>> = HashMap::new();
        let mut networks = HashMap::new();
        for (id, api) in &policy.apis {
            for (method, routes) in &api.routes {
                let tree = trees.entry(*id).or_default().entry(method.clone()).or_default();
                for (index, route) in routes.iter().enumerate() {
                    let mut node = &mut *tree;
                    for segment in &route.segments {
                        node = match segment {
                            Segment::Literal(text) => node.literals.entry(text.clone()).or_default(),
                            Segment::Parameter(_) => node.parameter.get_or_insert_with(Default::default),
                        };
                    }
                    // The compiler refuses two routes of one shape; the first one wins otherwise.
                    node.route.get_or_insert(index);
                    if let Some(network) = &route.rules.network {
                        networks.insert(route.operation_id, parse_networks(&network.source_networks));
                    }
                }
            }
        }
        Prepared { policy, trees, networks }
    }

    /// The source networks an operation allows, parsed (empty: no such rule, or any source).
    pub fn source_networks(&self, operation_id: i64) -> &[ipnet::IpNet] {
        self.networks.get(&operation_id).map_or(&[], Vec::as_slice)
    }

    pub fn find<'a>(&'a self, api: i64, method: &str, segments: &[Cow<'_, str>]) -> Option<Matched<'a>> {
        let index = walk(self.trees.get(&api)?.get(method)?, segments)?;
        let route = &self.policy.apis.get(&api)?.routes.get(method)?[index];
        let parameters = route
            .segments
            .iter()
            .zip(segments)
            .filter_map(|(segment, value)| match segment {
                Segment::Parameter(name) => Some((name.as_str(), value.as_ref().to_owned())),
                Segment::Literal(_) => None,
            })
            .collect();
        Some(Matched { route, parameters })
    }
}

/// Networks (`10.0.0.0/8`) and single addresses (a host-length network); the compiler
/// refuses anything else, and whatever still does not parse allows nothing.
fn parse_networks(allowed: &[String]) -> Vec<ipnet::IpNet> {
    allowed
        .iter()
        .filter_map(|text| text.parse::<ipnet::IpNet>().ok().or_else(|| text.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from)))
        .collect()
}

fn walk(node: &Node, segments: &[Cow<'_, str>]) -> Option<usize> {
    let Some((first, rest)) = segments.split_first() else { return node.route };
    if let Some(found) = node.literals.get(first.as_ref()).and_then(|next| walk(next, rest)) {
        return Some(found);
    }
    node.parameter.as_deref().and_then(|next| walk(next, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_decode_and_tricks_are_refused() {
        assert_eq!(canonical_segments("/pets/42?x=1").unwrap(), ["pets", "42"]);
        assert_eq!(canonical_segments("/").unwrap(), Vec::<String>::new());
        assert_eq!(canonical_segments("/files/a%20b").unwrap(), ["files", "a b"]);
        for (path, error) in [
            ("pets", PathError::NotAbsolute),
            ("/pets/", PathError::EmptySegment),
            ("//pets", PathError::EmptySegment),
            ("/pets/./1", PathError::DotSegment),
            ("/public/../admin", PathError::DotSegment),
            ("/public/%2e%2e/admin", PathError::Encoding),
            ("/admin%2Fusers", PathError::Encoding),
            ("/%61dmin", PathError::Encoding),
            ("/admin;x=1", PathError::MatrixParameter),
            ("/admin%", PathError::Encoding),
            ("/admin%zz", PathError::Encoding),
            ("/a%00b", PathError::Encoding),
            ("/a%ff", PathError::Encoding),
        ] {
            assert_eq!(canonical_segments(path), Err(error), "{path}");
        }
    }
}
