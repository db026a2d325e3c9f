//! Palisade policy
