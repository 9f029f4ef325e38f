//! Files that a distribution's archive carries, fetched through the host's
//! own package tool: `apt-get source --download-only PKG=VERSION` for source
//! packages, `apt-get download PKG=VERSION` for binary ones. No archive host
//! is ever written down; apt's configuration decides.

use std::path::Path;

use super::fetch::{Attempt, FetchError, Fetcher, Progress};
use crate::lock::LockEntry;

pub struct AptFetcher;

impl Fetcher for AptFetcher {
    fn attempts(&self, entry: &LockEntry) -> Vec<Attempt> {
        entry
            .apt
            .iter()
            .map(|a| Attempt {
                label: format!(
                    "apt-get {} {}={}",
                    if a.binary { "download" } else { "source" },
                    a.package,
                    a.version
                ),
                locator: format!("{}={}", a.package, a.version),
            })
            .collect()
    }

    fn fetch(
        &self,
        entry: &LockEntry,
        attempt: &Attempt,
        part: &Path,
        _: &dyn Progress,
    ) -> Result<(), FetchError> {
        let apt = entry
            .apt
            .as_ref()
            .ok_or_else(|| FetchError::NotApplicable("no apt source".into()))?;
        let work = tempfile::Builder::new()
            .prefix("apt-")
            .tempdir_in(part.parent().unwrap_or(Path::new(".")))
            .map_err(FetchError::io("making a directory for apt-get"))?;
        let failure = run_apt_get(&attempt.locator, apt.binary, work.path())?;
        let file = work.path().join(&apt.file);
        // apt-get source fails when any file of the package is missing, even
        // if the one wanted arrived; apt moves a file into place only after
        // checking it against the archive's index, and the caller verifies it
        // against the lock as well.
        if !file.is_file() {
            return Err(FetchError::Tool(failure.unwrap_or_else(|| {
                format!("apt-get did not produce {}", apt.file)
            })));
        }
        std::fs::rename(&file, part)
            .map_err(FetchError::io(format!("moving {} into place", apt.file)))
    }
}

/// Runs `apt-get source --download-only PKG=VERSION` (or `apt-get download`
/// for a binary package) in `dir`. Returns how apt-get failed, if it did;
/// what it wrote to `dir` may still be usable.
pub fn run_apt_get(locator: &str, binary: bool, dir: &Path) -> Result<Option<String>, FetchError> {
    let mut command = std::process::Command::new("apt-get");
    if binary {
        command.args(["download", "-q"]);
    } else {
        command.args(["source", "--download-only", "-q"]);
    }
    // The lock checked package and version, and `--` keeps apt-get from
    // ever reading them as options.
    let output = command
        .arg("--")
        .arg(locator)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| FetchError::Tool(format!("running apt-get: {e}")))?;
    if output.status.success() {
        return Ok(None);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let hint = if stderr.contains("deb-src") || stderr.contains("Unable to find a source package") {
        " (is a deb-src entry configured? scripts/setup-debian.sh adds one)"
    } else {
        ""
    };
    Ok(Some(format!(
        "apt-get failed ({}){hint}: {}",
        output.status,
        stderr.lines().last().unwrap_or("").trim()
    )))
}
