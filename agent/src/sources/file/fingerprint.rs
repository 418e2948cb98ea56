//! A file's identity: a hash of its first line (up to a size), not its name or inode, so a file
//! keeps its identity when renamed and a truncated file gets a new one.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The fingerprint of `file`, or `None` while its first line is still too short to tell.
pub fn fingerprint(file: &File, max_bytes: usize) -> io::Result<Option<u64>> {
    let mut buf = vec![0u8; max_bytes];
    let mut filled = 0;
    while filled < max_bytes {
        let n = file.read_at(&mut buf[filled..], filled as u64)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    let head = &buf[..filled];
    let id = match memchr::memchr(b'\n', head) {
        Some(nl) => &head[..=nl],
        None if filled == max_bytes => head,
        None => return Ok(None),
    };
    Ok(Some(xxhash_rust::xxh3::xxh3_64(id)))
}
