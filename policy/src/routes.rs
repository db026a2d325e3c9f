//! Matching a request path to a route. Paths are taken only in canonical form: anything
//! a server or proxy might read differently from us (`//`, `.` and `..` segments,
//! percent-encoded characters that need no encoding, encoded `/`, matrix parameters,
//! a trailing `/`) is refused before matching, so no rule can be bypassed by spelling the
//! same path another way. Matching walks a tree built once per bundle, so its cost
//! depends on the path's length, not on how many APIs the bundle holds.

use crate::model::{CompiledPolicy, Route, Segment};
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

/// The decoded segments of a canonical path.
pub fn canonical_segments(path: &str) -> Result<Vec<String>, PathError> {
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    let Some(rest) = path.strip_prefix('/') else { return Err(PathError::NotAbsolute) };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    rest.split('/').map(decode_segment).collect()
}

fn decode_segment(segment: &str) -> Result<String, PathError> {
    if segment.is_empty() {
        return Err(PathError::EmptySegment);
    }
    if segment.contains(';') {
        return Err(PathError::MatrixParameter);
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
    Ok(text)
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
    /// By API id and method.
    trees: HashMap<(i64, String), Node>,
}

/// A matched route and the values of its path parameters.
#[derive(Debug, PartialEq)]
pub struct Matched<'a> {
    pub route: &'a Route,
    pub parameters: Vec<(&'a str, String)>,
}

impl Prepared {
    pub fn new(policy: CompiledPolicy) -> Prepared {
        let mut trees: HashMap<(i64, String), Node> = HashMap::new();
        for (method, routes) in policy.apis.iter().flat_map(|(id, api)| api.routes.iter().map(move |(m, r)| ((*id, m.clone()), r))) {
            let tree = trees.entry(method).or_default();
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
            }
        }
        Prepared { policy, trees }
    }

    /// The route of API `api` for `method` and the canonical `segments`, literals
    /// preferred over parameters at each position.
    pub fn find<'a>(&'a self, api: i64, method: &str, segments: &[String]) -> Option<Matched<'a>> {
        let index = walk(self.trees.get(&(api, method.to_owned()))?, segments)?;
        let route = &self.policy.apis.get(&api)?.routes.get(method)?[index];
        let parameters = route
            .segments
            .iter()
            .zip(segments)
            .filter_map(|(segment, value)| match segment {
                Segment::Parameter(name) => Some((name.as_str(), value.clone())),
                Segment::Literal(_) => None,
            })
            .collect();
        Some(Matched { route, parameters })
    }
}

fn walk(node: &Node, segments: &[String]) -> Option<usize> {
    let Some((first, rest)) = segments.split_first() else { return node.route };
    if let Some(found) = node.literals.get(first).and_then(|next| walk(next, rest)) {
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
