//! The live test: the Python client against the real `am serve`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::wire_doc_path;

// ---------------------------------------------------------------------------
// The live test against `am serve`
// ---------------------------------------------------------------------------

/// How long the server may take to print its `PeerInfo`.
const SERVER_START: Duration = Duration::from_secs(60);
/// How long the whole Python client may run (its own receives time out sooner).
const CLIENT_RUN: Duration = Duration::from_secs(120);

/// Kills and reaps a child process when dropped, whatever happened.
struct KillOnDrop {
    child: Child,
    what: &'static str,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        eprintln!("[python_interop] {} stopped", self.what);
    }
}

/// Collects a child's output on a thread, to show it when something fails.
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("AM_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/wire_client.py")
}

/// Runs `cmd` to completion within `limit`, killing it if it overruns.
fn run_with_timeout(
    cmd: &mut Command,
    what: &'static str,
    limit: Duration,
) -> (ExitStatus, String) {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let mut guard = KillOnDrop { child, what };
    let stdout = drain(guard.child.stdout.take().expect("piped stdout"));
    let stderr = drain(guard.child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + limit;
    let status = loop {
        match guard.child.try_wait().expect("wait for child") {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                drop(guard);
                let out = stdout.join().unwrap_or_default();
                let err = stderr.join().unwrap_or_default();
                panic!("{what} did not finish within {limit:?}; stdout:\n{out}\nstderr:\n{err}");
            }
            // A bounded poll of the child's state, not a wait for an event.
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    drop(guard);
    // The output goes through the test harness: shown on failure or with --nocapture.
    println!("--- {what} ---\n{}", stdout.join().unwrap_or_default());
    (status, stderr.join().unwrap_or_default())
}

/// Whether the interpreter can import pyzmq.
fn has_pyzmq(python: &Path) -> bool {
    let probe = Command::new(python)
        .args(["-c", "import zmq"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    matches!(probe, Ok(status) if status.success())
}

/// Starts `am serve` on a free local port, with `secret` as its
/// `AM_AUTH_SECRET` if given; returns the guard and the PeerInfo.
fn start_server(secret: Option<&str>) -> (KillOnDrop, serde_json::Value, JoinHandle<String>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_am"));
    command.env_remove("AM_AUTH_SECRET");
    if let Some(secret) = secret {
        command.env("AM_AUTH_SECRET", secret);
    }
    let child = command
        .args(["serve", "--endpoint", "tcp://127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start `am serve`");
    let mut guard = KillOnDrop {
        child,
        what: "am serve",
    };
    let stderr = drain(guard.child.stderr.take().expect("piped stderr"));
    let stdout = guard.child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        // Keep draining so the server never blocks on a full pipe.
        for _ in lines {}
    });
    let line = match rx.recv_timeout(SERVER_START) {
        Ok(Some(Ok(line))) => line,
        other => {
            drop(guard);
            let err = stderr.join().unwrap_or_default();
            panic!(
                "`am serve` printed no PeerInfo line within {SERVER_START:?} ({other:?}); its stderr:\n{err}"
            );
        }
    };
    let info: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("first stdout line of `am serve` is not JSON ({e}): {line}"));
    (guard, info, stderr)
}

#[test]
fn python_client_speaks_the_wire_protocol() {
    let python = python();
    if !has_pyzmq(&python) {
        let msg = format!(
            "pyzmq is not importable by {} (set AM_PYTHON, or create <crate>/.venv with pyzmq)",
            python.display()
        );
        if std::env::var_os("CI").is_some() {
            panic!("{msg}: CI must install it");
        }
        eprintln!("skipped: pyzmq not installed; run scripts/test-all ({msg})");
        return;
    }
    let script = client_script();

    // Offline: the Python encoder reproduces the document's generated frames.
    let (status, err) = run_with_timeout(
        Command::new(&python)
            .arg(&script)
            .arg("--self-test")
            .arg(wire_doc_path()),
        "wire_client.py --self-test",
        CLIENT_RUN,
    );
    assert!(
        status.success(),
        "wire_client.py --self-test failed ({status}); stderr:\n{err}"
    );

    // Live: the Python client against the real server.
    let (server, info, server_stderr) = start_server(None);
    let endpoint = info["tcp_endpoint"]
        .as_str()
        .unwrap_or_else(|| panic!("PeerInfo has no tcp_endpoint: {info}"))
        .to_owned();
    let instance = info["instance_id"]
        .as_str()
        .unwrap_or_else(|| panic!("PeerInfo has no instance_id: {info}"))
        .to_owned();
    let (status, err) = run_with_timeout(
        Command::new(&python)
            .arg(&script)
            .arg(&endpoint)
            .args(["--expect-instance", &instance]),
        "wire_client.py",
        CLIENT_RUN,
    );
    drop(server);
    if !status.success() {
        let server_err = server_stderr.join().unwrap_or_default();
        panic!(
            "wire_client.py failed against {endpoint} ({status}); its stderr:\n{err}\n`am serve` stderr:\n{server_err}"
        );
    }
}

/// The Python client authenticates (docs/wire.md, section 14) with Python's
/// own `hmac`, is refused before that, and then passes every check.
#[test]
fn python_client_authenticates_with_the_shared_secret() {
    let python = python();
    if !has_pyzmq(&python) {
        assert!(std::env::var_os("CI").is_none(), "CI must install pyzmq");
        eprintln!("skipped: pyzmq not installed; run scripts/test-all");
        return;
    }
    let secret = "interop secret";
    let (server, info, server_stderr) = start_server(Some(secret));
    let endpoint = info["tcp_endpoint"]
        .as_str()
        .expect("tcp_endpoint")
        .to_owned();
    let instance = info["instance_id"]
        .as_str()
        .expect("instance_id")
        .to_owned();
    let (status, err) = run_with_timeout(
        Command::new(&python)
            .arg(client_script())
            .arg(&endpoint)
            .args(["--expect-instance", &instance, "--secret", secret])
            .env_remove("AM_AUTH_SECRET"),
        "wire_client.py --secret",
        CLIENT_RUN,
    );
    drop(server);
    if !status.success() {
        let server_err = server_stderr.join().unwrap_or_default();
        panic!(
            "wire_client.py --secret failed ({status}); its stderr:\n{err}\n`am serve` stderr:\n{server_err}"
        );
    }
}
