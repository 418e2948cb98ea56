//! Fuzz entries in the normal test suite. Each entry (`vigil_agent::fuzzing`, the watchdog's
//! `spec::fuzzing`) is a `fn(&[u8])` that panics when an invariant breaks; libFuzzer runs them
//! for real (`scripts/fuzz.sh TARGET SECONDS`), and the unit tests run each one over its
//! committed corpus (`fuzz/corpus/TARGET`) plus inputs mutated from it by a seeded generator,
//! so every test run is the same and needs no fuzzing toolchain.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};

/// SplitMix64: small, seeded, the same sequence on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// The committed corpus of `target`: the files of `<workspace>/fuzz/corpus/<target>`, by name.
pub fn corpus(workspace: &Path, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = workspace.join("fuzz").join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect()
}

/// One to four random edits of `input`: bit flips, interesting bytes, inserted or deleted
/// runs, repeated runs, dictionary tokens and splices with another corpus input.
pub fn mutate(rng: &mut Rng, input: &[u8], others: &[Vec<u8>], dictionary: &[&[u8]]) -> Vec<u8> {
    const INTERESTING: &[u8] = b"\0\xff\n\r\t \"'{}[]:=,.-+0179eE#\\\x80\xc3";
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(8) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let n = 1 + rng.below(8);
                for _ in 0..n {
                    out.insert(at, rng.next_u64() as u8);
                }
            }
            3 if !out.is_empty() => {
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(16)).min(out.len());
                out.drain(start..end);
            }
            4 if !out.is_empty() => {
                // Repeat a run: long names, many items, deep nesting.
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(32)).min(out.len());
                let run = out[start..end].to_vec();
                for _ in 0..1 + rng.below(64) {
                    out.splice(start..start, run.iter().copied());
                }
            }
            5 if !dictionary.is_empty() => {
                let token = dictionary[rng.below(dictionary.len())];
                out.splice(at..at, token.iter().copied());
            }
            6 if !others.is_empty() => {
                let other = &others[rng.below(others.len())];
                let from = rng.below(other.len() + 1);
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
            _ => out.truncate(at),
        }
    }
    out
}

/// Runs `entry` over the corpus of `target`, then over `iterations` inputs mutated from it
/// (seeded by `seed`). An input that panics is saved (its path is printed) and the panic goes on,
/// failing the test; `scripts/fuzz.sh TARGET` replays such a file.
pub fn run(
    workspace: &Path,
    target: &str,
    dictionary: &[&[u8]],
    seed: u64,
    iterations: usize,
    entry: fn(&[u8]),
) {
    let corpus = corpus(workspace, target);
    assert!(!corpus.is_empty(), "the corpus of {target} is empty");
    for (path, input) in &corpus {
        guarded(target, input, entry, || {
            format!("corpus file {}", path.display())
        });
    }
    let inputs: Vec<Vec<u8>> = corpus.into_iter().map(|(_, b)| b).collect();
    let mut rng = Rng::new(seed);
    let mut last = inputs[0].clone();
    for i in 0..iterations {
        // Mostly fresh mutations of a corpus input; sometimes stacked on the previous one.
        let base = if rng.below(4) == 0 {
            last
        } else {
            inputs[rng.below(inputs.len())].clone()
        };
        let input = mutate(&mut rng, &base, &inputs, dictionary);
        guarded(target, &input, entry, || {
            format!("mutated input #{i} (seed {seed})")
        });
        last = input;
    }
}

fn guarded(target: &str, input: &[u8], entry: fn(&[u8]), what: impl Fn() -> String) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| entry(input))) {
        let saved = std::env::temp_dir().join(format!("vigil-fuzz-{target}-failure"));
        let _ = std::fs::write(&saved, input);
        eprintln!(
            "fuzz entry {target} failed on {}; the input is saved as {}",
            what(),
            saved.display()
        );
        resume_unwind(panic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_seeded_and_mutations_stay_small() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert_eq!(a.next_u64(), b.next_u64());
        let mut rng = Rng::new(1);
        for _ in 0..10_000 {
            let out = mutate(&mut rng, b"hello world", &[b"abc".to_vec()], &[b"TOKEN"]);
            assert!(out.len() < 11 + 4 * 64 * 32 + 64);
        }
    }
}
