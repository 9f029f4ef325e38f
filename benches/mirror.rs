//! Mirror benchmarks, measured side by side (A B A B …) so that drift on a
//! shared machine hits both alike. Run with `cargo bench --bench mirror`;
//! it prints the table and writes it into docs/benchmarks.md.
//!
//! 1. Fetch 64 files from a local server that adds 50 ms per request:
//!    `stagebuild mirror fetch` against a sequential `curl` loop.
//! 2. Hash throughput: `stagebuild mirror verify` against `sha256sum`.

#[path = "../tests/common/http.rs"]
mod http;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use http::{Behavior, Server};
use sha2::{Digest, Sha256};

mod support;
use support::median;

const ROUNDS: usize = 5;

fn run(cmd: &mut Command) -> Duration {
    let started = Instant::now();
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

fn lock(dir: &Path, files: &[(String, Vec<u8>, String)]) {
    let mut text = String::from("version: 1\nsources:\n");
    for (name, body, url) in files {
        text.push_str(&format!(
            "  - name: {name}\n    sha256: {}\n    size: {}\n    urls: [\"{url}\"]\n",
            hex::encode(Sha256::digest(body)),
            body.len()
        ));
    }
    fs::write(dir.join("sources.lock"), text).unwrap();
}

fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn main() {
    let stagebuild = env!("CARGO_BIN_EXE_stagebuild");
    let work = tempfile::tempdir().unwrap();

    // 1. Fetch: 64 files of 64 KiB, 50 ms of latency per request.
    let server = Server::start();
    let files: Vec<(String, Vec<u8>, String)> = (0..64)
        .map(|i| {
            let body = bytes(64 * 1024, i);
            let url = server.route(
                &format!("/f{i}.tar"),
                Behavior::Latency(Duration::from_millis(50), body.clone()),
            );
            (format!("f{i}.tar"), body, url)
        })
        .collect();
    lock(work.path(), &files);
    let (mut ours, mut curl) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let mirror = work.path().join(format!("mirror{round}"));
        ours.push(run(Command::new(stagebuild)
            .arg("--project")
            .arg(work.path())
            .arg("--mirror")
            .arg(&mirror)
            .args(["mirror", "fetch"])));
        let out = work.path().join(format!("curl{round}"));
        fs::create_dir_all(&out).unwrap();
        let script = files
            .iter()
            .map(|(name, _, url)| format!("curl -sSf -o '{}/{name}' '{url}'", out.display()))
            .collect::<Vec<_>>()
            .join(" && ");
        curl.push(run(Command::new("sh").arg("-c").arg(script)));
    }
    let (ours_fetch, curl_fetch) = (median(ours), median(curl));

    // 2. Hashing: 16 files of 16 MiB, verified from the page cache.
    let big: Vec<(String, Vec<u8>, String)> = (0..16)
        .map(|i| {
            (
                format!("big{i}.tar"),
                bytes(16 << 20, 100 + i),
                format!("https://example.org/big{i}.tar"),
            )
        })
        .collect();
    let hashing = work.path().join("hashing");
    fs::create_dir_all(hashing.join("incoming")).unwrap();
    for (name, body, _) in &big {
        fs::write(hashing.join("incoming").join(name), body).unwrap();
    }
    lock(&hashing, &big);
    let total_bytes: usize = big.iter().map(|(_, b, _)| b.len()).sum();
    let import = Command::new(stagebuild)
        .arg("--project")
        .arg(&hashing)
        .args(["mirror", "import"])
        .arg(hashing.join("incoming"))
        .output()
        .unwrap();
    assert!(import.status.success());
    let (mut ours, mut coreutils) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(run(Command::new(stagebuild)
            .arg("--project")
            .arg(&hashing)
            .args(["mirror", "verify"])));
        coreutils.push(run(Command::new("sh").arg("-c").arg(format!(
            "sha256sum {}/mirror/sha256/* > /dev/null",
            hashing.display()
        ))));
    }
    let (ours_verify, sha256sum) = (median(ours), median(coreutils));
    let mbps = |d: Duration| total_bytes as f64 / d.as_secs_f64() / 1e6;

    let table = format!(
        "### Mirror\n\n\
         Measured {date_trimmed} on {machine}; medians of {ROUNDS} interleaved rounds.\n\n\
         | figure | stagebuild | baseline | ratio | goal |\n\
         |---|---|---|---|---|\n\
         | fetch 64 × 64 KiB, 50 ms latency per request | {:.2} s (`mirror fetch`, 8 jobs) | {:.2} s (sequential `curl` loop) | {:.1}× faster | parallel downloads beat a sequential loop |\n\
         | hash 16 × 16 MiB from the page cache | {:.0} MB/s (`mirror verify`) | {:.0} MB/s (`sha256sum`) | {:.1}× faster | at least as fast as sha256sum |\n",
        ours_fetch.as_secs_f64(),
        curl_fetch.as_secs_f64(),
        curl_fetch.as_secs_f64() / ours_fetch.as_secs_f64(),
        mbps(ours_verify),
        mbps(sha256sum),
        sha256sum.as_secs_f64() / ours_verify.as_secs_f64(),
        date_trimmed = support::today(),
        machine = support::machine(),
    );
    support::write_section("mirror", &table);
}
