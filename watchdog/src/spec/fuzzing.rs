//! The spec loader's fuzz entry. The input is up to three YAML files separated by lines
//! `--8<--`; a file that is not UTF-8 is one that cannot be read. Loading never panics, and
//! every problem it reports names one of the files (or the spec directory) and says something.

use std::path::{Path, PathBuf};

use super::load::load_texts;

pub fn spec_loader(data: &[u8]) {
    let dir = Path::new("/spec");
    let files: Vec<(PathBuf, Result<String, String>)> = split(data)
        .into_iter()
        .take(3)
        .enumerate()
        .map(|(i, bytes)| {
            let text = String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string());
            (dir.join(format!("{i}.yaml")), text)
        })
        .collect();
    let names: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    match load_texts(dir, files) {
        Ok(spec) => {
            for (service, file) in &spec.sources {
                assert!(names.contains(file), "{service} from unknown {file:?}");
                assert!(spec.services.contains_key(service));
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an error without problems");
            for e in &errors.0 {
                assert!(
                    e.file == dir || names.contains(&e.file),
                    "a problem in an unknown file: {e}"
                );
                assert!(!e.message.is_empty(), "a problem without a message: {e:?}");
            }
            let _ = errors.to_string();
        }
    }
}

fn split(data: &[u8]) -> Vec<&[u8]> {
    const CUT: &[u8] = b"\n--8<--\n";
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(CUT.len()).position(|w| w == CUT) {
        out.push(&rest[..at]);
        rest = &rest[at + CUT.len()..];
    }
    out.push(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn spec_loader() {
        let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the watchdog is in the workspace");
        let dict: &[&[u8]] = &[
            b"\n--8<--\n",
            b"services:\n",
            b"  checkout:\n",
            b"    slos:\n      - name: a\n",
            b"objective: 99.9\n",
            b"window: 30d\n",
            b"settings:\n",
            b"burn_rate_alerts:\n",
            b"notify:\n",
            b"infrastructure:\n",
            b"&a [*a, *a]",
            b"!!binary",
            b"1e999",
            b"-9223372036854775809",
        ];
        vigil_common::fuzzing::run(
            workspace,
            "spec_loader",
            dict,
            12,
            2_000,
            super::spec_loader,
        );
    }
}
