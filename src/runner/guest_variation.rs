//! An audit's variations, as a guest step sees them. The agent stays as it
//! is (its sha256 is in every guest step's key): the variations travel in
//! the job it reads, `.stagebuild/env` (sourced before it enters the working
//! directory) and `.stagebuild/step.sh` (run after it sets its umask), so
//! both guest modes take them from the same files. What only one mode can
//! do is done by its runner: qemu attaches a fresh ext4 for the build
//! directory and starts the guest's clock ahead; the sandbox binds the build
//! directory at the varied path and names the host.

use std::collections::BTreeMap;
use std::path::Path;

use super::guest::GuestMode;
use super::job::Variation;
use super::shell::quote;

/// The serial of the disk an audit's qemu guest builds on: an empty ext4
/// with its own hash seed, which the job's environment mounts at the varied
/// build path before it copies the build directory there.
pub const SCRATCH_SERIAL: &str = "audit";

/// What `JOBS` is in a guest (`-smp 1`).
pub const GUEST_JOBS: usize = 1;

/// The audit's timezone in a guest: the guest has no zoneinfo, so a name
/// like `Pacific/Kiritimati` would silently mean UTC there. The same offset
/// as a POSIX rule, which musl reads without any file.
const GUEST_TZ: &str = "<+14>-14";

/// Applies `variation` to a guest step's base environment (before the
/// step's own `env`, which wins as on the host).
pub fn vary_env(env: &mut BTreeMap<String, String>, variation: &Variation, workdir: &str) {
    if let Some(root) = &variation.build_root {
        env.insert("HOME".into(), root.clone());
        env.insert(
            "STAGEBUILD_WORKDIR".into(),
            Path::new(root).join(workdir).display().to_string(),
        );
    }
    if variation.tz.is_some() {
        env.insert("TZ".into(), GUEST_TZ.into());
    }
    if let Some(locale) = &variation.locale {
        env.insert("LC_ALL".into(), locale.clone());
    }
    if variation.jobs.is_some() {
        env.insert("JOBS".into(), (GUEST_JOBS + 1).to_string());
    }
}

/// Shell the agent sources after the step's environment, in qemu mode: it
/// moves the build directory to the varied path (a copy, on the audit's
/// ext4 when the runner attached one, without the `lost+found` of a new
/// file system: only the step's files belong there) and sets the hostname. Sandbox mode
/// needs none of it: its runner binds the build directory there and names
/// the sandbox's host.
pub fn env_prelude(variation: &Variation, mode: GuestMode) -> String {
    if mode == GuestMode::Sandbox {
        return String::new();
    }
    let mut sh = String::from("# stagebuild audit: the variations of this rebuild\n");
    if let Some(root) = &variation.build_root {
        let root = quote(root);
        sh.push_str(&format!(
            "mkdir -p {root}\n\
             for b in /sys/block/vd*; do\n  \
             [ \"$(cat \"$b/serial\" 2>/dev/null)\" = {SCRATCH_SERIAL} ] && mount -t ext4 \"/dev/${{b##*/}}\" {root}\n\
             done\n\
             rmdir {root}/lost+found 2>/dev/null\n\
             cp -a /build/. {root}/\n"
        ));
    }
    if let Some(host) = &variation.hostname {
        sh.push_str(&format!("hostname {}\n", quote(host)));
    }
    sh
}

/// What the step's script starts with: the agent sets umask 022 just
/// before it runs the script.
pub fn script_prelude(variation: &Variation) -> String {
    match variation.umask {
        Some(umask) => format!("umask {umask:04o}\n"),
        None => String::new(),
    }
}

/// The variations a guest rebuild in `mode` gets, in words, and those it
/// cannot get, with why.
pub fn describe(variation: &Variation, mode: GuestMode) -> (Vec<String>, Vec<String>) {
    let mut varied = Vec::new();
    let mut not_varied = Vec::new();
    if let Some(root) = &variation.build_root {
        varied.push(match mode {
            GuestMode::Qemu => format!(
                "build path: {root} instead of /build (the build directory copied there by the guest)"
            ),
            GuestMode::Sandbox => format!("build path: {root} instead of /build"),
        });
    }
    if let Some(umask) = variation.umask {
        varied.push(format!("umask: {umask:04o} instead of 0022"));
    }
    if let Some(locale) = &variation.locale {
        varied.push(format!("locale: LC_ALL={locale} instead of C"));
    }
    if variation.tz.is_some() {
        varied.push(format!(
            "TZ: {GUEST_TZ} (UTC+14; a POSIX rule, as the guest has no zoneinfo) instead of UTC"
        ));
    }
    if let Some(host) = &variation.hostname {
        varied.push(format!("hostname: {host} instead of (none)"));
    }
    if variation.jobs.is_some() {
        varied.push(format!("jobs: {} instead of {GUEST_JOBS}", GUEST_JOBS + 1));
    }
    match (mode, variation.clock_ahead_days) {
        (GuestMode::Qemu, Some(days)) => varied.push(format!(
            "wall clock: the guest's clock starts {days} days ahead (qemu -rtc base); SOURCE_DATE_EPOCH unchanged"
        )),
        (GuestMode::Sandbox, Some(_)) => not_varied.push(
            "wall clock: the guest's programs are static, so libfaketime cannot reach them, \
             and the host's clock is not the sandbox's to move (qemu mode varies it)"
                .into(),
        ),
        (_, None) => {}
    }
    match (mode, variation.dir_order) {
        // The ext4 is made on the host as a file: no root or loop device.
        (GuestMode::Qemu, _) if variation.build_root.is_some() => varied.push(
            "directory order: the build directory on a fresh ext4 disk with its own hash seed, \
             so every directory lists in another order than on the guest's root"
                .into(),
        ),
        (GuestMode::Sandbox, Some(order)) => varied.push(order.describe().into()),
        _ => not_varied
            .push("directory order: this machine cannot reorder the build directory".into()),
    }
    (varied, not_varied)
}

/// qemu's `-rtc base=` for a clock `days` ahead of `now` (seconds since
/// the epoch), in UTC: `YYYY-MM-DDTHH:MM:SS`.
pub fn rtc_base(now: u64, days: u32) -> String {
    let t = now + u64::from(days) * 86_400;
    let (day, secs) = ((t / 86_400) as i64, t % 86_400);
    // Days since 1970-01-01 to a civil date, in 400-year eras of 146097 days.
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rtc_base_is_a_civil_date_that_many_days_ahead() {
        assert_eq!(rtc_base(0, 0), "1970-01-01T00:00:00");
        // 2023-01-01 (the demo's SOURCE_DATE_EPOCH) plus a leap year's day.
        assert_eq!(rtc_base(1_672_531_200, 0), "2023-01-01T00:00:00");
        assert_eq!(rtc_base(1_672_531_200 + 3723, 397), "2024-02-02T01:02:03");
        assert_eq!(rtc_base(951_782_400, 0), "2000-02-29T00:00:00");
    }

    #[test]
    fn a_guest_rebuild_takes_its_variations_from_the_job() {
        let variation = Variation {
            build_root: Some("/audit/elsewhere/build".into()),
            umask: Some(0o002),
            tz: Some("Pacific/Kiritimati".into()),
            hostname: Some("audit-rebuild".into()),
            jobs: Some(3),
            ..Variation::default()
        };
        let mut env = BTreeMap::new();
        vary_env(&mut env, &variation, "bzip2-1.0.8");
        assert_eq!(
            env["STAGEBUILD_WORKDIR"],
            "/audit/elsewhere/build/bzip2-1.0.8"
        );
        assert_eq!(env["TZ"], "<+14>-14");
        assert_eq!(env["JOBS"], "2");
        assert_eq!(script_prelude(&variation), "umask 0002\n");
        let qemu = env_prelude(&variation, GuestMode::Qemu);
        assert!(
            qemu.contains("= audit ] && mount -t ext4")
                && qemu.contains("cp -a /build/. /audit/elsewhere/build/")
                && qemu.contains("hostname audit-rebuild"),
            "{qemu}"
        );
        assert_eq!(env_prelude(&variation, GuestMode::Sandbox), "");
        assert_eq!(
            env_prelude(&Variation::default(), GuestMode::Qemu)
                .lines()
                .count(),
            1
        );
    }
}
