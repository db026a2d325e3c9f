//! Only the bench lives here: `benches/compare.rs`.
