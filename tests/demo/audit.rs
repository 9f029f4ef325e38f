//! Audits of the real demo: all 14 steps rebuilt and compared, the guest
//! steps in the other mode than the one that built them, the HTML report
//! read back from headless Chromium; and a guest step that embeds the date,
//! which the audit names as the first to diverge, in either guest mode.

use std::path::Path;
use std::time::Duration;

use super::book::dom;
use super::{
    GUEST_STEPS, built_demo, copy_of_built_state, mirror, project_with_vm_target, stagebuild,
};

#[test]
#[ignore = "slow: builds the real demo, then rebuilds it under variations"]
fn every_demo_step_is_reproducible_and_its_guest_steps_match_in_the_other_mode() {
    let state = built_demo();
    // The shared build's guest steps were built in qemu: --compare-modes
    // rebuilds them in the sandbox.
    let out = stagebuild(state)
        .args(["audit", "--target", "demo", "--compare-modes", "--json"])
        // The kernels are rebuilt too: about 8 minutes on an idle 2-core
        // machine, much longer on a busy one.
        .timeout(Duration::from_secs(3600))
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(
        report["first_divergent"],
        serde_json::Value::Null,
        "{report:#}"
    );
    let headline = "Every step is reproducible: all 14 were rebuilt and matched";
    assert_eq!(report["summary"]["headline"], headline, "{report:#}");
    assert_eq!(report["summary"]["not_audited"], 0);
    assert_eq!(report["compare_modes"], true);
    let verdicts: Vec<(&str, bool, &str)> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap(),
                s["reproducible"].as_bool().unwrap(),
                s["rebuilt_in"].as_str().unwrap_or("host"),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("linux-headers", true, "host"),
            ("kernel-i386", true, "host"),
            ("kernel-x86_64", true, "host"),
            ("musl", true, "host"),
            ("busybox", true, "host"),
            ("kexec-tools", true, "host"),
            ("tcc", true, "host"),
            ("musl-x86_64", true, "host"),
            ("tcc-x86_64", true, "host"),
            ("guest-initramfs", true, "host"),
            ("bzip2", true, "sandbox"),
            ("bzip2-check", true, "sandbox"),
            ("kexec-x86_64", true, "sandbox"),
            ("bzip2-x86_64", true, "sandbox"),
        ]
    );
    for step in &report["steps"].as_array().unwrap()[10..] {
        assert_eq!(step["checkpoint_built_in"], "qemu", "{step:#}");
    }
    // Every host variation was applied on this machine: none was skipped.
    assert_eq!(report["not_varied"], serde_json::json!([]), "{report:#}");
    assert_eq!(report["variations"].as_array().unwrap().len(), 8);
    let guests = &report["guest_variations"];
    assert_eq!(guests.as_array().unwrap().len(), 1, "{guests:#}");
    assert_eq!(guests[0]["mode"], "sandbox");
    assert_eq!(guests[0]["variations"].as_array().unwrap().len(), 7);

    // The HTML report, as a browser shows it.
    let dom = dom(&state.join("audit/demo/report.html"));
    assert!(
        dom.contains(&format!("<p class=\"good\" id=\"summary\">{headline}</p>")),
        "{dom}"
    );
    assert!(
        dom.contains("<h2>Variations: guest steps rebuilt in the sandbox</h2>"),
        "{dom}"
    );
    for (id, _, mode) in &verdicts {
        let row = format!("data-step=\"{id}\">");
        let at = dom.find(&row).unwrap_or_else(|| panic!("no row for {id}"));
        let row = dom[at..].split("</tr>").next().unwrap();
        assert!(row.contains("verdict\">reproducible<"), "{row}");
        let shown = match *mode {
            "host" => "host".to_string(),
            mode => format!("{mode} (checkpoint built in qemu)"),
        };
        assert!(row.contains(&format!("rebuilt-in\">{shown}<")), "{row}");
    }
}

/// A guest step that writes the date (to the hour), where it was built,
/// its umask and hostname, and its build directory's listing order.
const DATED_STEP: &str = "name: dated\nversion: \"1\"\ndescription: Records when and where it was built.\nbuild: |\n  mkdir many\n  i=1\n  while [ $i -le 40 ]; do echo $i > many/file-$i; i=$((i+1)); done\n  mkdir -p \"$OUT/etc\"\n  {\n    echo \"built on $(date '+%Y-%m-%d %H')\"\n    echo \"in $(pwd)\"\n    echo \"umask $(umask)\"\n    echo \"hostname $(cat /proc/sys/kernel/hostname)\"\n    echo \"order\" $(find many -type f)\n  } > \"$OUT/etc/dated\"\n  cat \"$OUT/etc/dated\"\n  chmod -R go-w \"$OUT\"\n";

/// Audits only `dated` of the target `faulty` in `mode`: it must be the
/// first that diverges, with a diff; returns the diff.
fn dated_diverges(project: &Path, state: &Path, mode: &str) -> String {
    let out = super::common::stagebuild(project, Some(state), Some(&mirror()))
        .args(["audit", "--target", "faulty", "--only", "dated"])
        .args(["--guest", mode, "--json"])
        .timeout(Duration::from_secs(600))
        .assert()
        .code(3);
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(report["first_divergent"], "dated", "{report:#}");
    assert_eq!(
        report["summary"]["headline"],
        "0 of 11 steps reproducible, 1 not reproducible, first dated, 10 not audited (not chosen with --only)"
    );
    let dated = &report["steps"][10];
    assert_eq!(dated["rebuilt_in"], mode, "{dated:#}");
    assert_eq!(dated["checkpoint_built_in"], "qemu", "{dated:#}");
    let file = &dated["files"][0];
    assert_eq!(file["path"], "etc/dated", "{dated:#}");
    let diff = file["detail"]["diff"].as_str().unwrap().to_string();
    assert!(
        diff.contains("-built on ") && diff.contains("+built on "),
        "{diff}"
    );
    diff
}

#[test]
#[ignore = "slow: builds the real demo and boots its guest"]
fn a_guest_step_that_embeds_the_date_is_the_first_to_diverge_in_either_mode() {
    let state = copy_of_built_state("demo-audit-dated");
    let project = project_with_vm_target("demo-audit-dated-project", &[("dated", DATED_STEP)]);
    super::run_faulty(&project, &state, false).success();

    // Each variation shows in what the step recorded: the originals were
    // built in /build with umask 022 on the guest's root, unnamed.
    for mode in ["sandbox", "qemu"] {
        let diff = dated_diverges(&project, &state, mode);
        for line in [
            "-in /build\n",
            "+in /audit/elsewhere/build\n",
            "-umask 0022\n",
            "+umask 0002\n",
            "-hostname (none)\n",
            "+hostname audit-rebuild\n",
            "-order many/",
            "+order many/",
        ] {
            assert!(diff.contains(line), "{mode}: {line:?} in {diff}");
        }
    }
}

#[test]
#[ignore = "slow: builds the real demo, then rebuilds its guest steps in qemu"]
fn the_demos_guest_steps_are_reproducible_in_qemu_and_in_the_other_mode() {
    let state = copy_of_built_state("demo-audit-qemu");
    let only = GUEST_STEPS.join(",");
    let out = stagebuild(&state)
        .args([
            "audit", "--target", "demo", "--guest", "qemu", "--only", &only, "--json",
        ])
        .timeout(Duration::from_secs(1500))
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(
        report["summary"]["headline"],
        "4 of 14 steps reproducible, 10 not audited (not chosen with --only)",
        "{report:#}"
    );
    for step in &report["steps"].as_array().unwrap()[10..] {
        assert_eq!(step["rebuilt_in"], "qemu", "{step:#}");
        assert_eq!(step["reproducible"], true, "{step:#}");
    }
    let qemu = &report["guest_variations"][0];
    assert_eq!(qemu["mode"], "qemu");
    assert_eq!(qemu["not_varied"], serde_json::json!([]), "{qemu:#}");

    // The same steps in the other mode than qemu, which built them.
    let out = stagebuild(&state)
        .args([
            "audit",
            "--target",
            "demo",
            "--compare-modes",
            "--only",
            &only,
        ])
        .timeout(Duration::from_secs(600))
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    for step in GUEST_STEPS {
        assert!(
            text.contains(&format!(
                "step {step}: reproducible, rebuilt in sandbox (checkpoint built in qemu)\n"
            )),
            "{text}"
        );
    }
    assert!(
        text.contains("not varied: wall clock: the guest's programs are static"),
        "{text}"
    );
}
