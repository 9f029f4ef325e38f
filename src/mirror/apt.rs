//! Sources that only a distribution's archive still carries, fetched through
//! the host's own package tool: `apt-get source --download-only PKG=VERSION`.
//! No archive host is ever written down; apt's configuration decides.

use std::path::Path;

use super::Fetcher;
use crate::lock::LockEntry;

pub struct AptFetcher;

impl Fetcher for AptFetcher {
    fn describe(&self, entry: &LockEntry) -> Option<String> {
        entry
            .apt
            .as_ref()
            .map(|a| format!("apt-get source {}={}", a.package, a.version))
    }

    fn fetch(&self, entry: &LockEntry, dest: &Path) -> Result<(), String> {
        let apt = entry.apt.as_ref().ok_or("no apt source")?;
        let parent = dest.parent().ok_or("bad destination")?;
        let work = tempfile::Builder::new()
            .prefix("apt-")
            .tempdir_in(parent)
            .map_err(|e| e.to_string())?;
        let output = std::process::Command::new("apt-get")
            .args(["source", "--download-only", "-q"])
            .arg(format!("{}={}", apt.package, apt.version))
            .current_dir(work.path())
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("running apt-get: {e}"))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let hint = if stderr.contains("deb-src")
                || stderr.contains("Unable to find a source package")
            {
                " (is a deb-src entry configured? see the README)"
            } else {
                ""
            };
            return Err(format!(
                "apt-get failed ({}){hint}: {}",
                output.status,
                stderr.lines().last().unwrap_or("").trim()
            ));
        }
        let file = work.path().join(&apt.file);
        std::fs::rename(&file, dest)
            .map_err(|e| format!("apt-get did not produce {}: {e}", apt.file))
    }
}
