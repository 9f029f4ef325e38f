//! A real HTTP/1.1 server on 127.0.0.1 whose paths misbehave on purpose:
//! each behaviour is a fault a real mirror can show (errors, dropped
//! connections, ignored ranges, wrong or short bodies, redirects, stalls).

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone)]
pub enum Behavior {
    /// Serves the body, honouring `Range`.
    Serve(Vec<u8>),
    /// Answers 500 this many times, then serves.
    FailThenServe(usize, Vec<u8>),
    /// The first response announces the full length, sends `after` bytes and
    /// closes; later ones honour `Range`.
    DropMidBody(Vec<u8>, usize),
    /// Like DropMidBody, but later requests get the whole body with 200,
    /// whatever `Range` says.
    IgnoreRange(Vec<u8>, usize),
    /// A complete response whose body is only the first `len` bytes.
    Short(Vec<u8>, usize),
    /// 302 to another path.
    Redirect(String),
    /// Sends `after` bytes of the body, then nothing (for up to 30 s).
    Stall(Vec<u8>, usize),
    /// Waits this long before answering, then serves (a slow link).
    Latency(Duration, Vec<u8>),
    NotFound,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub range: Option<String>,
}

pub struct Server {
    pub port: u16,
    routes: Arc<Mutex<HashMap<String, Behavior>>>,
    pub log: Arc<Mutex<Vec<Request>>>,
    /// Connections accepted, whether or not a request followed.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let routes: Arc<Mutex<HashMap<String, Behavior>>> = Default::default();
        let log: Arc<Mutex<Vec<Request>>> = Default::default();
        let (r, l) = (routes.clone(), log.clone());
        let connections: Arc<std::sync::atomic::AtomicUsize> = Default::default();
        let counted = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (r, l) = (r.clone(), l.clone());
                std::thread::spawn(move || {
                    let _ = handle(stream, &r, &l);
                });
            }
        });
        Server {
            port,
            routes,
            log,
            connections,
        }
    }

    pub fn route(&self, path: &str, behavior: Behavior) -> String {
        self.routes
            .lock()
            .unwrap()
            .insert(path.to_string(), behavior);
        self.url(path)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self, path: &str) -> Vec<Request> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

fn handle(
    stream: TcpStream,
    routes: &Mutex<HashMap<String, Behavior>>,
    log: &Mutex<Vec<Request>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("range")
        {
            range = Some(value.trim().to_string());
        }
    }
    let nth = {
        let mut log = log.lock().unwrap();
        log.push(Request {
            path: path.clone(),
            range: range.clone(),
        });
        log.iter().filter(|r| r.path == path).count()
    };
    let behavior = routes
        .lock()
        .unwrap()
        .get(&path)
        .cloned()
        .unwrap_or(Behavior::NotFound);
    let mut out = stream;
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
    match behavior {
        Behavior::Serve(body) => serve(&mut out, &body, start),
        Behavior::FailThenServe(fails, _) if nth <= fails => {
            status(&mut out, "500 Internal Server Error")
        }
        Behavior::FailThenServe(_, body) => serve(&mut out, &body, start),
        Behavior::DropMidBody(body, after) | Behavior::IgnoreRange(body, after) if nth == 1 => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            out.write_all(&body[..after])?;
            out.flush()
        }
        Behavior::DropMidBody(body, _) => serve(&mut out, &body, start),
        Behavior::IgnoreRange(body, _) => serve(&mut out, &body, None),
        Behavior::Short(body, len) => serve(&mut out, &body[..len], None),
        Behavior::Redirect(to) => write!(
            out,
            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        Behavior::Stall(body, after) => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            out.write_all(&body[..after])?;
            out.flush()?;
            let until = Instant::now() + Duration::from_secs(30);
            while Instant::now() < until {
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        }
        Behavior::Latency(delay, body) => {
            std::thread::sleep(delay);
            serve(&mut out, &body, start)
        }
        Behavior::NotFound => status(&mut out, "404 Not Found"),
    }
}

fn status(out: &mut TcpStream, status: &str) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

fn serve(out: &mut TcpStream, body: &[u8], start: Option<usize>) -> std::io::Result<()> {
    match start {
        Some(start) if start < body.len() => {
            write!(
                out,
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len() - 1,
                body.len(),
                body.len() - start
            )?;
            out.write_all(&body[start..])
        }
        Some(_) => status(out, "416 Range Not Satisfiable"),
        None => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            out.write_all(body)
        }
    }
}
