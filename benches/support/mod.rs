//! What every benchmark shares: timing a command, medians, the machine's
//! description, small project files, and writing a benchmark's own section
//! of docs/benchmarks.md. Each benchmark uses only some of it.
#![allow(dead_code)]

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// "1.23 s", or "4.2 ms" under a tenth of a second.
pub fn secs(d: Duration) -> String {
    match d.as_secs_f64() {
        s if s < 0.1 => format!("{:.1} ms", s * 1000.0),
        s => format!("{s:.2} s"),
    }
}

/// Runs a command and returns how long it took; it must end with `code`.
pub fn timed(cmd: &mut Command, code: i32) -> Duration {
    let started = Instant::now();
    let out = cmd.output().expect("runs");
    let took = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

pub fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// `steps/NAME.yaml`, with `extra` (YAML lines) before its build script.
pub fn step_file(dir: &Path, name: &str, extra: &str, build: &str) {
    write(
        &dir.join("steps").join(format!("{name}.yaml")),
        &format!(
            "name: {name}\nversion: \"1\"\ndescription: A benchmark step.\n{extra}build: |\n{}",
            build
                .lines()
                .map(|l| format!("  {l}\n"))
                .collect::<String>()
        ),
    );
}

/// `steps/targets/NAME.yaml`, with `stages` (YAML lines) as its stages.
pub fn target_file(dir: &Path, name: &str, stages: &str) {
    write(
        &dir.join("steps/targets").join(format!("{name}.yaml")),
        &format!("name: {name}\nsource_date_epoch: 1672531200\nstages:\n{stages}"),
    );
}

/// "2 CPUs, AMD EPYC …": what the figures were measured on.
pub fn machine() -> String {
    let model = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(str::to_string))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_default();
    format!(
        "{} CPUs, {model}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    )
}

/// Today's date (UTC), as YYYY-MM-DD.
pub fn today() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Replaces the section of docs/benchmarks.md between the benchmark
/// `name`'s markers with `body`, or appends it; prints it too.
pub fn write_section(name: &str, body: &str) {
    print!("{body}");
    let begin = format!("<!-- {name}:begin (written by `cargo bench --bench {name}`) -->\n");
    let end = format!("<!-- {name}:end -->");
    let section = format!("{begin}{body}{end}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/benchmarks.md");
    let doc = fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".to_string());
    let updated = match (doc.find(&begin), doc.find(&end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{section}{}", &doc[..b], &doc[e + end.len()..])
        }
        _ => format!("{}\n\n{section}\n", doc.trim_end()),
    };
    fs::write(&path, updated).unwrap();
    eprintln!("wrote {}", path.display());
}
