//! Palisade's policy language, with no I/O: model types, the compiler from inventory
//! settings to bundles, bundle encoding and signatures, and the evaluator. Shared by the
//! server and the agent; it is filled in by the bundles issue.
