//! Replays the fuzz corpus (`policy/fuzz/corpus/<target>/`) through the harnesses the
//! cargo-fuzz targets run, so every CI run covers what fuzzing found, on stable Rust.
//! Beyond the files, each seed is mutated a few thousand times (bit flips, truncations,
//! splices) from a fixed seed: a small, deterministic fuzz pass. With
//! `PALISADE_UPDATE_CORPUS=1` the seed files are written anew.

use policy::fuzzing;
use std::path::{Path, PathBuf};

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
}

fn files(target: &str) -> Vec<Vec<u8>> {
    let folder = corpus(target);
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    assert!(!entries.is_empty(), "{} has no inputs", folder.display());
    entries.into_iter().map(|path| std::fs::read(path).unwrap()).collect()
}

/// xorshift64*: deterministic mutations without a dependency.
struct Mutator(u64);

impl Mutator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn mutate(&mut self, input: &[u8], other: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..=self.below(4) {
            match self.below(5) {
                0 if !out.is_empty() => {
                    let at = self.below(out.len());
                    out[at] ^= 1 << self.below(8);
                }
                1 if !out.is_empty() => {
                    let at = self.below(out.len());
                    out.truncate(at);
                }
                2 => {
                    let at = self.below(out.len() + 1);
                    const BYTES: &[u8] = b"{}[]\",:\\/.%0aA\x00\xff";
                    let byte = BYTES[self.below(BYTES.len())];
                    out.insert(at, byte);
                }
                3 if !other.is_empty() => {
                    let (at, from) = (self.below(out.len() + 1), self.below(other.len()));
                    let len = self.below(64).min(other.len() - from);
                    out.splice(at..at, other[from..from + len].iter().copied());
                }
                _ if out.len() > 1 => {
                    let at = self.below(out.len() - 1);
                    out.remove(at);
                }
                _ => {}
            }
        }
        out
    }
}

fn replay(target: &str, harness: fn(&[u8]), rounds: usize) {
    let inputs = files(target);
    for input in &inputs {
        harness(input);
    }
    let mut mutator = Mutator(0x005E_ED0F_FA11_5AFE);
    for round in 0..rounds {
        let input = &inputs[round % inputs.len()];
        let other = &inputs[mutator.below(inputs.len())];
        harness(&mutator.mutate(input, other));
    }
}

#[test]
fn the_bundle_corpus_replays_without_a_panic() {
    replay("verify_bundle", fuzzing::verify_bytes, 10_000);
}

#[test]
fn the_request_corpus_replays_without_a_panic_or_an_unauthenticated_allow() {
    replay("evaluate_request", fuzzing::evaluate_bytes, 20_000);
}

#[test]
fn the_bundle_seeds_are_current() {
    // The signed seed must still verify: a format change that breaks it is caught here,
    // and the seeds rewritten with PALISADE_UPDATE_CORPUS=1.
    let seed = fuzzing::seed_bundle(1);
    let path = corpus("verify_bundle").join("signed-seed.json");
    if std::env::var_os("PALISADE_UPDATE_CORPUS").is_some() {
        std::fs::create_dir_all(corpus("verify_bundle")).unwrap();
        std::fs::write(&path, &seed).unwrap();
    }
    assert_eq!(std::fs::read(&path).unwrap(), seed, "rewrite the seed with PALISADE_UPDATE_CORPUS=1");
    let trust = policy::bundle::TrustStore::from_keys([fuzzing::seed_key().verifying_key()]);
    assert!(policy::bundle::verify(&seed, &trust, 0, 1_700_000_000_000).is_ok());
}
