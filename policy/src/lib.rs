//! Palisade's policy language, with no I/O: the compiler from a snapshot of inventory
//! settings to a compiled policy, bundle encoding and signatures, route matching and the
//! evaluator. Shared by the server and the agent. The pipeline reads in the module names:
//! `model` -> `compile` -> `routes` (indexed tables) -> `evaluate` -> `inspect` (L3, on the
//! response); `bundle` carries it.

pub mod agent_api;
pub mod bundle;
pub mod cases;
pub mod compile;
pub mod contract;
pub mod credentials;
pub mod diff;
pub mod files;
pub mod evaluate;
pub mod fuzzing;
pub mod inspect;
pub mod model;
pub mod routes;

pub use compile::compile;
pub use evaluate::{Decision, Request, VerifiedCredential, decide, evaluate};
pub use model::{CompiledPolicy, Diagnostic, Snapshot};
pub use routes::Prepared;
