//! Headless Chromium (Debian's `chromium`, installed by scripts/setup.sh) renders a local HTML
//! file: once to dump the DOM it built, once to take a screenshot, which is decoded here (PNG:
//! zlib-compressed scanlines with per-row filters) to tell a drawn page from a blank one.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use vigil_test_support::ChildGuard;

pub struct Rendered {
    pub dom: String,
    /// Share of pixels that are not near-white.
    pub inked_share: f64,
    /// Colours seen (quantised to 32 levels per channel).
    pub distinct_colours: usize,
}

fn chromium(profile: &Path, args: &[&str]) -> ChildGuard {
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args);
    let mut guard =
        ChildGuard::spawn("chromium", cmd).expect("start chromium (scripts/setup.sh installs it)");
    if guard.wait_exit(Duration::from_secs(90)).is_none() {
        let log = guard.log();
        guard.kill();
        panic!("chromium did not finish within 90 s:\n{log}");
    }
    guard
}

pub fn render(html: &Path, scratch: &Path) -> Rendered {
    let url = format!("file://{}", html.display());
    let profile = tempfile::tempdir().unwrap();
    let dump = chromium(profile.path(), &["--dump-dom", &url]);
    let log = dump.log();
    // The log holds stdout and stderr: the DOM is the <html>...</html> part.
    let dom = match (log.find("<html"), log.rfind("</html>")) {
        (Some(a), Some(b)) if b > a => log[a..b + "</html>".len()].to_string(),
        _ => panic!("no DOM in chromium's output:\n{log}"),
    };
    let shot = scratch.join("report.png");
    let profile = tempfile::tempdir().unwrap();
    let guard = chromium(
        profile.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1000,1600",
            &url,
        ],
    );
    let png =
        std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot ({e}):\n{}", guard.log()));
    let (inked_share, distinct_colours) = ink(&png);
    Rendered {
        dom,
        inked_share,
        distinct_colours,
    }
}

fn be32(b: &[u8]) -> usize {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
}

/// Decodes an 8-bit RGB/RGBA PNG and measures how much of it is drawn.
fn ink(png: &[u8]) -> (f64, usize) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut width, mut height, mut channels) = (0, 0, 0);
    let mut idat = Vec::new();
    let mut at = 8;
    while at + 8 <= png.len() {
        let len = be32(&png[at..]);
        let kind = &png[at + 4..at + 8];
        let data = &png[at + 8..at + 8 + len];
        match kind {
            b"IHDR" => {
                width = be32(data);
                height = be32(&data[4..]);
                assert_eq!(data[8], 8, "8-bit channels expected");
                channels = match data[9] {
                    2 => 3,
                    6 => 4,
                    other => panic!("colour type {other} not handled"),
                };
            }
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        at += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .expect("inflate IDAT");
    let stride = width * channels;
    assert_eq!(raw.len(), height * (stride + 1), "scanline data size");
    let mut pixels = vec![0u8; height * stride];
    for y in 0..height {
        let filter = raw[y * (stride + 1)];
        let line = &raw[y * (stride + 1) + 1..(y + 1) * (stride + 1)];
        for x in 0..stride {
            let a = if x >= channels {
                pixels[y * stride + x - channels]
            } else {
                0
            };
            let b = if y > 0 {
                pixels[(y - 1) * stride + x]
            } else {
                0
            };
            let c = if x >= channels && y > 0 {
                pixels[(y - 1) * stride + x - channels]
            } else {
                0
            };
            let predicted = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((a as u16 + b as u16) / 2) as u8,
                4 => {
                    let p = a as i16 + b as i16 - c as i16;
                    let (pa, pb, pc) = (
                        (p - a as i16).abs(),
                        (p - b as i16).abs(),
                        (p - c as i16).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                other => panic!("PNG filter {other}"),
            };
            pixels[y * stride + x] = line[x].wrapping_add(predicted);
        }
    }
    let mut inked = 0usize;
    let mut colours = BTreeSet::new();
    for p in pixels.chunks(channels) {
        if p[..3].iter().any(|v| *v < 200) {
            inked += 1;
        }
        colours.insert((p[0] / 8, p[1] / 8, p[2] / 8));
    }
    (inked as f64 / (width * height) as f64, colours.len())
}
