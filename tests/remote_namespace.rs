//! A peer that is not local: `am serve` in its own network and mount
//! namespaces (a test host of ours, reached over a veth pair). Its
//! shared-memory rendezvous is unreachable from here, so the client falls
//! back to TCP on its own. Needs root and iproute2; skips with a message
//! when the kernel or the sandbox refuses namespaces.

mod common;

use std::process::Command;
use std::time::Duration;

use active_message::{ActiveMessageManagerBuilder, TransportKind};
use common::process::ServerProcess;

/// Link-local addresses of the veth pair (our own test host only).
const HOST_ADDR: &str = "169.254.77.1/30";
const PEER_IP: &str = "169.254.77.2";

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Removes a directory on drop.
struct RemoveDir(String);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A network namespace with a veth pair to it; removed on drop.
struct TestHost {
    netns: String,
}

impl TestHost {
    fn create() -> Result<Self, String> {
        let id = std::process::id();
        let host = Self {
            netns: format!("am-test-{id}"),
        };
        let (a, b) = (format!("amh{id}"), format!("amp{id}"));
        let ns = host.netns.as_str();
        run(&["ip", "netns", "add", ns])?;
        run(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b])?;
        run(&["ip", "link", "set", &b, "netns", ns])?;
        run(&["ip", "addr", "add", HOST_ADDR, "dev", &a])?;
        run(&["ip", "link", "set", &a, "up"])?;
        run(&[
            "ip",
            "netns",
            "exec",
            ns,
            "ip",
            "addr",
            "add",
            &format!("{PEER_IP}/30"),
            "dev",
            &b,
        ])?;
        run(&["ip", "netns", "exec", ns, "ip", "link", "set", &b, "up"])?;
        run(&["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"])?;
        Ok(host)
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth pair, and with it ours.
        let _ = run(&["ip", "netns", "del", &self.netns]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_in_another_namespace_is_reached_over_tcp() {
    let host = match TestHost::create() {
        Ok(host) => host,
        Err(why) => {
            eprintln!("skipped: cannot create a network namespace here ({why})");
            return;
        }
    };
    // In its own mount namespace, the server's rendezvous directory is a
    // private tmpfs: its socket does not exist for us, although the kernel
    // (host id) is the same. (Only that directory: the binary may live anywhere.)
    let rendezvous = format!("/run/am-test-ns-{}", std::process::id());
    std::fs::create_dir_all(&rendezvous).unwrap();
    let _cleanup = RemoveDir(rendezvous.clone());
    let script = format!(
        "mount -t tmpfs tmpfs {rendezvous} && XDG_RUNTIME_DIR={rendezvous} exec \"{}\" serve --endpoint tcp://{PEER_IP}:0",
        env!("CARGO_BIN_EXE_am")
    );
    let mut command = Command::new("ip");
    command.args([
        "netns",
        "exec",
        &host.netns,
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ]);
    let server = ServerProcess::start_command(command);
    assert!(
        server.info.shm_endpoint.is_some(),
        "the server advertises shared memory too"
    );

    let manager = ActiveMessageManagerBuilder::new()
        .endpoint("tcp://169.254.77.1:0")
        .default_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    assert_eq!(
        manager.peer_info().await.host_id,
        server.info.host_id,
        "same kernel, same host id"
    );
    let c = manager.client();
    c.connect_to_peer(server.info.clone()).await.unwrap();
    assert_eq!(manager.stats().peers[0].transport, TransportKind::Tcp);
    let echoed: String = c
        .active_message("echo")
        .unwrap()
        .payload("across namespaces")
        .unwrap()
        .expect_response::<String>()
        .send(server.info.instance_id)
        .await
        .unwrap()
        .await_response()
        .await
        .unwrap();
    assert_eq!(echoed, "across namespaces");
    manager.shutdown().await.unwrap();
    drop(server);
    drop(host);
}
