//! The QMP client against a real qemu, and against a real qemu whose stream
//! has an unknown event and a stray reply injected into it (the one thing
//! the real qemu cannot be made to send on demand).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use stagebuild::qmp::{Qmp, QmpError};

struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A paused qemu (no guest code runs) with a QMP socket.
fn qemu(socket: &Path) -> Qemu {
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-machine",
            "q35",
            "-accel",
            "tcg",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-S",
        ])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", socket.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64 is installed by scripts/setup-debian.sh");
    Qemu(child)
}

#[test]
fn commands_replies_events_and_errors_with_a_real_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("qmp.sock");
    let _qemu = qemu(&socket);
    let mut qmp = Qmp::connect(&socket, Duration::from_secs(30)).unwrap();
    assert!(
        qmp.greeting["QMP"]["version"]["qemu"]["major"]
            .as_u64()
            .unwrap()
            >= 7
    );

    let status = qmp.execute("query-status", None).unwrap();
    assert_eq!(status["status"], "prelaunch");

    // cont and stop each send an event, possibly before their reply.
    qmp.execute("cont", None).unwrap();
    qmp.wait_event(&["RESUME"], Duration::from_secs(10))
        .unwrap();
    qmp.execute("stop", None).unwrap();
    let stop = qmp.wait_event(&["STOP"], Duration::from_secs(10)).unwrap();
    assert_eq!(stop.name, "STOP");
    assert_eq!(
        qmp.execute("query-status", None).unwrap()["status"],
        "paused"
    );

    match qmp.execute("no-such-command", None) {
        Err(QmpError::Command { class, .. }) => assert_eq!(class, "CommandNotFound"),
        other => panic!("{other:?}"),
    }
    // HMP reports failure as a successful string; the client makes it an error.
    match qmp.hmp("device_del no-such-device") {
        Err(QmpError::Command { class, desc, .. }) => {
            assert_eq!(class, "HMP");
            assert!(desc.contains("no-such-device"), "{desc}");
        }
        other => panic!("{other:?}"),
    }
    assert!(qmp.hmp("info status").unwrap().contains("paused"));
    assert!(
        qmp.next_event(Duration::from_millis(200))
            .unwrap()
            .is_none()
    );

    qmp.execute("quit", None).unwrap();
    qmp.wait_event(&["SHUTDOWN"], Duration::from_secs(10))
        .unwrap();
}

/// Forwards between the client and qemu; before each reply it sends an event
/// no qemu has, and a reply with an id nobody asked for, with a field nobody
/// knows in both.
fn injecting_proxy(listen: &Path, qemu_socket: &Path) {
    let listener = UnixListener::bind(listen).unwrap();
    let upstream_path = qemu_socket.to_path_buf();
    std::thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let upstream = loop {
            match UnixStream::connect(&upstream_path) {
                Ok(s) => break s,
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let mut to_client = client.try_clone().unwrap();
        let mut to_qemu = upstream.try_clone().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(client).lines() {
                let Ok(line) = line else { break };
                if writeln!(to_qemu, "{line}").is_err() {
                    break;
                }
            }
        });
        for line in BufReader::new(upstream).lines() {
            let Ok(line) = line else { break };
            if line.contains("\"return\"") {
                let injected = [
                    json!({"event": "GUEST_TELEPORTED", "data": {"where": "moon", "x-new": [1, 2]}, "timestamp": {"seconds": 1, "microseconds": 2}}),
                    json!({"return": {"stale": true}, "id": 999_999, "x-unknown-field": "ignored"}),
                ];
                for message in injected {
                    writeln!(to_client, "{message}").unwrap();
                }
            }
            if writeln!(to_client, "{line}").is_err() {
                break;
            }
        }
    });
}

#[test]
fn an_unknown_event_and_a_stray_reply_neither_break_nor_desynchronise_it() {
    let dir = tempfile::tempdir().unwrap();
    let qemu_socket = dir.path().join("qemu.sock");
    let proxy_socket = dir.path().join("proxy.sock");
    let _qemu = qemu(&qemu_socket);
    injecting_proxy(&proxy_socket, &qemu_socket);

    let mut qmp = Qmp::connect(&proxy_socket, Duration::from_secs(30)).unwrap();
    // Each command gets its own reply, never the injected one or the one before.
    assert_eq!(
        qmp.execute("query-status", None).unwrap()["status"],
        "prelaunch"
    );
    let version = qmp.execute("query-version", None).unwrap();
    assert!(version["qemu"]["major"].as_u64().is_some(), "{version}");
    assert_eq!(
        qmp.execute("query-status", None).unwrap()["status"],
        "prelaunch"
    );

    let unknown: Vec<_> = qmp
        .pending_events()
        .filter(|e| e.name == "GUEST_TELEPORTED")
        .collect();
    assert!(unknown.len() >= 3, "{unknown:?}");
    assert_eq!(unknown[0].data["where"], "moon");
    let event = qmp
        .wait_event(&["GUEST_TELEPORTED"], Duration::from_secs(1))
        .unwrap();
    assert_eq!(event.data["x-new"], json!([1, 2]));
}
