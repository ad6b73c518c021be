//! A real child process running `am serve`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use active_message::PeerInfo;

/// `am serve` in a child process; killed when dropped.
pub struct ServerProcess {
    /// The child.
    pub child: Child,
    /// What it advertised.
    pub info: PeerInfo,
}

impl ServerProcess {
    /// Starts `am serve` with `args` and waits (at most 20 s) for its `PeerInfo` line.
    pub fn start(args: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_am"));
        command.arg("serve").args(args);
        Self::start_command(command)
    }

    /// Runs `command` (which must exec `am serve`) and waits for its `PeerInfo` line.
    pub fn start_command(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn am serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("am serve printed no PeerInfo within 20 s");
            }
        };
        let info = serde_json::from_str(&line).unwrap_or_else(|e| {
            let _ = child.kill();
            panic!("bad PeerInfo line {line:?}: {e}")
        });
        Self { child, info }
    }

    /// The TCP endpoint it advertised.
    pub fn tcp_endpoint(&self) -> &str {
        self.info.tcp_endpoint.as_deref().expect("a TCP endpoint")
    }

    /// Sends the signal `sig` (as `kill` spells it, e.g. `-STOP`).
    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(status.success(), "kill {sig} {pid}");
    }

    /// SIGSTOP, then waits until every thread of the child has stopped.
    ///
    /// `kill` returns once the signal is queued; the kernel stops the other
    /// threads only after one of them has taken the signal, so on a busy
    /// machine a running thread (say, the one draining a ring) goes on for a
    /// while. A test that counts on a stopped peer waits for it here.
    pub fn stop(&self) {
        self.signal("-STOP");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !self.all_threads_stopped() {
            assert!(
                std::time::Instant::now() < deadline,
                "am serve did not stop within 30 s of SIGSTOP"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Whether every thread in `/proc/<pid>/task` is in the stopped state.
    fn all_threads_stopped(&self) -> bool {
        let tasks = format!("/proc/{}/task", self.child.id());
        let Ok(entries) = std::fs::read_dir(tasks) else {
            return false;
        };
        entries.flatten().all(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // The state follows the command name, which may hold spaces or ')'.
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            matches!(state.and_then(|s| s.chars().next()), Some('T' | 't'))
        })
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits (at most `within`) for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
