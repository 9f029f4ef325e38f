//! The command a failed run prints to continue where it stopped.

use std::path::Path;

use crate::cli::{Cli, GuestChoice, RunArgs};
use crate::runner::shell;

/// `stagebuild … run --resume` with the options that chose this run's
/// project, state, mirror, guest mode, overrides and sources, quoted so a
/// shell gives the resumed run the same words.
pub fn command(cli: &Cli, args: &RunArgs) -> String {
    let mut words = global_words(cli);
    words.extend(["run", "--target", &args.target.target, "--resume"].map(String::from));
    push_guest(&mut words, args);
    if args.offline {
        words.push("--offline".into());
    }
    for dir in &args.from {
        words.extend(["--from".into(), dir.display().to_string()]);
    }
    push_overrides(&mut words, args);
    // A run that stops at a step, or builds one alone, resumes the same way.
    for (option, step) in [("--until", &args.until), ("--only", &args.only)] {
        if let Some(step) = step {
            words.extend([option.to_string(), step.clone()]);
        }
    }
    shell::words(&words)
}

/// `stagebuild … shell --target T STEP`: a shell in the environment of
/// `step`, which failed, for the same project, state, guest mode and
/// overrides.
pub fn shell_command(cli: &Cli, args: &RunArgs, step: &str) -> String {
    let mut words = global_words(cli);
    words.extend(["shell", "--target", &args.target.target, step].map(String::from));
    push_guest(&mut words, args);
    push_overrides(&mut words, args);
    shell::words(&words)
}

/// The guest mode, when it is not the default.
fn push_guest(words: &mut Vec<String>, args: &RunArgs) {
    if args.guest == GuestChoice::Sandbox {
        words.extend(["--guest", "sandbox"].map(String::from));
    }
}

fn push_overrides(words: &mut Vec<String>, args: &RunArgs) {
    for (var, value) in &args.target.overrides {
        words.extend(["--set".into(), format!("{var}={value}")]);
    }
}

/// `stagebuild` and the options that chose the project, state and mirror.
fn global_words(cli: &Cli) -> Vec<String> {
    let mut words = vec!["stagebuild".to_string()];
    let mut option = |name: &str, value: &Path| {
        words.push(name.to_string());
        words.push(value.display().to_string());
    };
    if cli.project != Path::new(".") {
        option("--project", &cli.project);
    }
    if let Some(state) = &cli.state {
        option("--state", state);
    }
    if let Some(mirror) = &cli.mirror {
        option("--mirror", mirror);
    }
    words
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn resume_of(args: &[&str]) -> String {
        let cli = Cli::try_parse_from(args).unwrap();
        let Command::Run(run) = &cli.command else {
            panic!("not a run: {args:?}")
        };
        super::command(&cli, run)
    }

    #[test]
    fn a_plain_run_resumes_with_its_target() {
        assert_eq!(
            resume_of(&["stagebuild", "run", "--target", "demo"]),
            "stagebuild run --target demo --resume"
        );
        assert_eq!(
            resume_of(&["stagebuild", "run", "--target", "demo", "--until", "tcc"]),
            "stagebuild run --target demo --resume --until tcc"
        );
        assert_eq!(
            resume_of(&["stagebuild", "run", "--target", "demo", "--only", "tcc"]),
            "stagebuild run --target demo --resume --only tcc"
        );
    }

    #[test]
    fn paths_and_values_with_spaces_are_quoted_so_the_shell_splits_them_back() {
        let line = resume_of(&[
            "stagebuild",
            "--state",
            "/tmp/my state",
            "run",
            "--target",
            "demo",
            "--guest",
            "sandbox",
            "--offline",
            "--set",
            "GREETING=hello world",
        ]);
        assert_eq!(
            shlex::split(&line).unwrap(),
            [
                "stagebuild",
                "--state",
                "/tmp/my state",
                "run",
                "--target",
                "demo",
                "--resume",
                "--guest",
                "sandbox",
                "--offline",
                "--set",
                "GREETING=hello world",
            ]
        );
    }
}
