//! JSON Schemas of step and target files, for editors: a YAML language
//! server completes keys and flags mistakes with them. Written by hand
//! rather than derived: the parser's types wrap fields in spans and keep
//! checks (names matching files, `STEP:PATH` references) in code, and a
//! schema for people wants descriptions and examples that the types do not
//! carry. Unit tests below keep its keys equal to the parser's.

use serde_json::{Value, json};

/// Which kind of project file a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaKind {
    /// A step file, steps/NAME.yaml.
    Step,
    /// A target file, steps/targets/NAME.yaml.
    Target,
}

pub fn schema(kind: SchemaKind) -> Value {
    match kind {
        SchemaKind::Step => step(),
        SchemaKind::Target => target(),
    }
}

fn text(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

fn names(description: &str) -> Value {
    json!({ "type": "array", "items": { "type": "string" }, "description": description })
}

fn step() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "stagebuild step",
        "description": "One package build: steps/NAME.yaml.",
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "version", "description"],
        "properties": {
            "name": {
                "type": "string",
                "pattern": "^[a-z0-9_][a-z0-9._-]*$",
                "description": "The step's name; its file is steps/NAME.yaml."
            },
            "version": text("The package's version, as text: \"1.0\", \"0.9.27+git20200814.62c30a4a\"."),
            "description": text("What the step builds and why, for people; not part of the cache key."),
            "sources": {
                "type": "array",
                "description": "Files from sources.lock, unpacked into the build directory in this order; \
                    { file, unpack } unpacks only the archive MEMBER held inside the file.",
                "items": {
                    "oneOf": [
                        { "type": "string" },
                        {
                            "type": "object",
                            "additionalProperties": false,
                            "required": ["file", "unpack"],
                            "properties": {
                                "file": text("The file's name in sources.lock: an archive."),
                                "unpack": text("The path of the archive inside it to unpack instead, e.g. gcc-12-12.2.0/gcc-12.2.0-dfsg.tar.xz.")
                            }
                        }
                    ]
                }
            },
            "patches": {
                "type": "array",
                "description": "Files under patches/STEP/, applied in this order in the workdir; \
                    each may give the reason it is applied, which the book shows.",
                "items": {
                    "oneOf": [
                        { "type": "string" },
                        {
                            "type": "object",
                            "additionalProperties": false,
                            "required": ["file", "reason"],
                            "properties": {
                                "file": text("The patch's file name under patches/STEP/."),
                                "reason": text("Why the patch is applied, for people; not part of the cache key.")
                            }
                        }
                    ]
                }
            },
            "files": names("Files under files/STEP/, copied into the top of the build directory."),
            "needs": names("The earlier steps of its (host) stage it uses, by id: it sees only their outputs in its sysroot and is rebuilt only when they change. Without it, a step sees every earlier step of its stage."),
            "workdir": text("Where the phases start, relative to the build directory (`.` is the build directory)."),
            "env": {
                "type": "object",
                "description": "Extra environment variables for the phases.",
                "propertyNames": { "pattern": "^[A-Za-z0-9_]+$" },
                "additionalProperties": { "type": "string" }
            },
            "configure": text("Shell commands of the configure phase."),
            "build": text("Shell commands of the build phase."),
            "install": text("Shell commands of the install phase: install into $OUT."),
            "timeout": {
                "type": "integer",
                "minimum": 1,
                "description": "Seconds the step may run in a VM stage, instead of the stage's step_timeout."
            },
            "kexec": {
                "type": "object",
                "description": "Instead of phases: load another kernel in the guest and jump to it.",
                "additionalProperties": false,
                "required": ["kernel"],
                "properties": {
                    "kernel": text("The kernel, STEP:PATH in an earlier step's output."),
                    "initrd": text("The initramfs, STEP:PATH."),
                    "append": text("The new kernel's command line, after stagebuild's console settings.")
                }
            }
        }
    })
}

fn target() -> Value {
    let scalar = json!({ "type": ["string", "integer", "boolean"] });
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "stagebuild target",
        "description": "The stages of a build, in order: steps/targets/NAME.yaml.",
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "source_date_epoch", "stages"],
        "properties": {
            "name": text("The target's name; its file is steps/targets/NAME.yaml."),
            "description": text("What the target builds, for people."),
            "source_date_epoch": {
                "type": "integer",
                "minimum": 0,
                "description": "Seconds since 1970 that every step sees as SOURCE_DATE_EPOCH, e.g. 1672531200."
            },
            "config": {
                "type": "object",
                "description": "Variables that `when:` conditions test; `--set VAR=VALUE` overrides them.",
                "additionalProperties": scalar
            },
            "stages": {
                "type": "array",
                "items": { "$ref": "#/$defs/stage" }
            }
        },
        "$defs": {
            "stage": {
                "type": "object",
                "additionalProperties": false,
                "required": ["name", "runner", "steps"],
                "properties": {
                    "name": text("The stage's name."),
                    "runner": {
                        "enum": ["host", "vm"],
                        "description": "host: a namespace sandbox on this machine; vm: a qemu guest per step."
                    },
                    "vm": { "$ref": "#/$defs/vm" },
                    "steps": {
                        "type": "array",
                        "items": {
                            "oneOf": [
                                { "type": "string", "description": "A step file's name." },
                                { "$ref": "#/$defs/step_ref" }
                            ]
                        }
                    }
                }
            },
            "step_ref": {
                "type": "object",
                "additionalProperties": false,
                "required": ["step"],
                "properties": {
                    "step": text("A step file's name."),
                    "pass": { "type": "integer", "minimum": 1, "description": "Build the package again: its id becomes STEP-passN." },
                    "when": {
                        "type": "object",
                        "description": "Config variable → the value (or values) for which the step is built.",
                        "additionalProperties": { "oneOf": [scalar, { "type": "array", "items": scalar }] }
                    }
                }
            },
            "vm": {
                "type": "object",
                "additionalProperties": false,
                "required": ["kernel"],
                "properties": {
                    "kernel": text("The guest's kernel, STEP:PATH in an earlier step's output."),
                    "initrd": text("The guest's initramfs, STEP:PATH."),
                    "memory": { "type": "integer", "minimum": 1, "description": "MiB of guest memory (512)." },
                    "disk": { "type": "integer", "minimum": 1, "description": "MiB of root disk (1024)." },
                    "boot_timeout": { "type": "integer", "minimum": 1, "description": "Seconds the guest may take to announce itself (120)." },
                    "step_timeout": { "type": "integer", "minimum": 1, "description": "Seconds a step may run (3600)." },
                    "append": text("Extra kernel command line.")
                }
            }
        }
    })
}

/// For a parse error "missing field `FIELD`" in `path`: what the field is
/// and an example line, found by the kind of file (a target under
/// `targets/`, the lock, or a step).
pub fn missing_field_hint(path: &std::path::Path, field: &str) -> Option<String> {
    let in_targets = path
        .parent()
        .and_then(|p| p.file_name())
        .is_some_and(|d| d == "targets");
    let is_lock = path.file_name().is_some_and(|n| n == "sources.lock");
    let (schema, example) = if is_lock {
        let entry = "  - name: hello-1.0.tar.gz\n    sha256: <64 hex digits: sha256sum FILE>\n    size: <bytes>\n    urls: [https://example.org/hello-1.0.tar.gz]";
        let example = match field {
            "version" => "version: 1".to_string(),
            "name" | "sha256" | "size" => entry.to_string(),
            _ => return None,
        };
        (Value::Null, example)
    } else if in_targets {
        let example = match field {
            "name" => "name: main  # the file's name without .yaml",
            "source_date_epoch" => "source_date_epoch: 1672531200",
            "stages" => "stages:\n  - name: host\n    runner: host\n    steps: [hello]",
            "runner" => "runner: host  # or vm",
            "steps" => "steps: [hello]",
            "step" => "- { step: gcc, pass: 2 }",
            "kernel" => "vm: { kernel: \"kernel-i386:boot/bzImage\" }",
            _ => return None,
        };
        (target(), example.to_string())
    } else {
        let example = match field {
            "name" => "name: hello  # the file's name without .yaml",
            "version" => "version: \"1.0\"",
            "description" => "description: What the step builds, and why.",
            "kernel" => "kexec: { kernel: \"kernel-x86_64:boot/bzImage\" }",
            _ => return None,
        };
        (step(), example.to_string())
    };
    let what = schema["properties"][field]["description"]
        .as_str()
        .map(|d| format!(" ({})", d.trim_end_matches('.')))
        .unwrap_or_default();
    Some(format!(
        "{what}; add it, for example:\n  {}",
        example.replace('\n', "\n  ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key the schema allows, with a value of its type.
    fn keys(schema: &Value) -> Vec<String> {
        schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn the_step_schema_allows_exactly_the_keys_the_parser_reads() {
        let dir = tempfile::tempdir().unwrap();
        let lock_path = dir.path().join("sources.lock");
        std::fs::write(&lock_path, "version: 1\nsources:\n").unwrap();
        let lock = crate::lock::Lock::load(&lock_path).unwrap();
        let file = dir.path().join("s.yaml");
        for key in keys(&step()) {
            let base = "name: s\nversion: \"1\"\ndescription: d\nbuild: b\n";
            let text = match key.as_str() {
                "name" | "version" | "description" | "build" => base.to_string(),
                "sources" | "patches" | "files" | "needs" => format!("{base}{key}: []\n"),
                "env" => format!("{base}env: {{}}\n"),
                "timeout" => format!("{base}timeout: 5\n"),
                "kexec" => {
                    "name: s\nversion: \"1\"\ndescription: d\nkexec: { kernel: \"k:boot/x\" }\n"
                        .to_string()
                }
                _ => format!("{base}{key}: x\n"),
            };
            std::fs::write(&file, &text).unwrap();
            if let Err(e) = crate::step::Step::load(&file, dir.path(), &lock) {
                assert!(!e.to_string().contains("unknown field"), "{key}: {e}");
            }
        }
        std::fs::write(
            &file,
            "name: s\nversion: \"1\"\ndescription: d\nbuild: b\ncolour: x\n",
        )
        .unwrap();
        let e = crate::step::Step::load(&file, dir.path(), &lock).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    #[test]
    fn the_target_schema_allows_exactly_the_keys_the_parser_reads() {
        // A target that uses every key the schema names, at every level.
        let full = "name: t\ndescription: d\nsource_date_epoch: 1\nconfig: { arch: x }\nstages:\n  - name: h\n    runner: host\n    steps: [a]\n  - name: s\n    runner: vm\n    vm: { kernel: \"a:k\", initrd: \"a:i\", memory: 1, disk: 1, boot_timeout: 1, step_timeout: 1, append: x }\n    steps: [b, { step: a, pass: 2, when: { arch: x } }]\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.yaml");
        std::fs::write(&path, full).unwrap();
        crate::target::Target::load(&path, &[]).unwrap();
        let schema = target();
        let defs = &schema["$defs"];
        for (properties, expected) in [
            (&schema, "config description name source_date_epoch stages"),
            (&defs["stage"], "name runner steps vm"),
            (&defs["step_ref"], "pass step when"),
            (
                &defs["vm"],
                "append boot_timeout disk initrd kernel memory step_timeout",
            ),
        ] {
            assert_eq!(keys(properties).join(" "), expected);
            for key in expected.split(' ') {
                assert!(full.contains(&format!("{key}:")), "{key}");
            }
        }
    }
}
