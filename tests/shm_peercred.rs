//! `SO_PEERCRED`: a peer running as another uid is refused unless allowed,
//! and when allowed its frames are copied out of shared memory before use.
//!
//! The other uid is a real child process: this test binary re-executed as
//! `nobody` (needs root; skipped otherwise), playing a raw peer.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use active_message::MessageId;
use active_message::handler_impls::{TypedContext, typed_unary_handler};
use active_message::transport::shm::endpoint_path;
use active_message::transport::shm::raw::{self as handshake, HandshakeParams};
use active_message::wire::{self, Header, Kind};
use active_message::{
    ActiveMessageManager, ActiveMessageManagerBuilder, Decode, Error, InstanceId, Payload,
    WaitPolicy,
};
use shm_ring::{Consumer, Producer};

const CHILD_ENV: &str = "AM_SHM_PEERCRED_CHILD";
const NOBODY: u32 = 65534;

/// The child's side; a no-op unless re-executed by the parent test.
#[test]
fn peercred_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let [path, server, expect]: [&str; 3] = spec
        .split('|')
        .collect::<Vec<_>>()
        .try_into()
        .expect("child spec");
    let server: InstanceId = InstanceId::from(uuid::Uuid::parse_str(server).expect("server id"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let params = HandshakeParams {
            local: InstanceId::new_random(),
            max_frame: 1 << 20,
            policy: WaitPolicy::default(),
            // The server runs as root: we must accept it.
            allowed_uids: vec![0],
            timeout: Duration::from_secs(5),
        };
        let result = handshake::connect(Path::new(path), server, &params).await;
        match expect {
            "refused" => assert!(matches!(result, Err(Error::Refused(_))), "{result:?}"),
            _ => {
                let link = result.expect("allowed uid must be accepted");
                assert_eq!(link.peer_uid, 0);
                let mut tx =
                    Producer::attach(&link.region, link.tx.offset, link.tx_bells.clone()).unwrap();
                let mut rx =
                    Consumer::attach(&link.region, link.rx.offset, link.rx_bells.clone()).unwrap();
                let header = Header::new(Kind::Request, MessageId(1), params.local);
                let payload = String::from("from nobody").encode().unwrap();
                tx.push(&wire::encode_to_vec(&header, "echo", &payload))
                    .await
                    .unwrap();
                let grant = tokio::time::timeout(Duration::from_secs(5), rx.read())
                    .await
                    .unwrap()
                    .unwrap();
                let bytes = grant.to_vec();
                grant.release();
                let view = wire::decode(&bytes, 1 << 20).unwrap();
                assert_eq!(view.header.kind, Kind::Response);
                assert_eq!(String::decode(view.payload).unwrap(), "from nobody");
            }
        }
    });
}

fn run_child_as_nobody(server: &ActiveMessageManager, socket: &Path, expect: &str) {
    let spec = format!("{}|{}|{expect}", socket.display(), server.instance_id());
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "peercred_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, spec)
        .uid(NOBODY)
        .gid(NOBODY)
        .status()
        .expect("run the child");
    assert!(
        status.success(),
        "child expecting {expect:?} failed: {status}"
    );
}

fn socket_of(info: &active_message::PeerInfo) -> std::path::PathBuf {
    endpoint_path(info.shm_endpoint.as_deref().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_uids_are_refused_unless_allowed() {
    if nix::unistd::geteuid().as_raw() != 0 {
        eprintln!("skipped: running a peer as another uid needs root");
        return;
    }
    let base = std::env::temp_dir().join(format!("am-peercred-{}", uuid::Uuid::new_v4()));
    let dir = base.join("rv");
    let builder = || {
        ActiveMessageManagerBuilder::new()
            .endpoint("local://")
            .shm_dir(&dir)
    };
    let echo = || typed_unary_handler("echo", |c: TypedContext<String>| Ok(c.input));
    let strict = builder().build().await.unwrap();
    strict.register_handler("echo", echo()).await.unwrap();
    let open = builder().allow_uid(NOBODY).build().await.unwrap();
    open.register_handler("echo", echo()).await.unwrap();
    // Let `nobody` reach the sockets (the uid check is what must stop it).
    let strict_socket = socket_of(&strict.peer_info().await);
    let open_socket = socket_of(&open.peer_info().await);
    for (path, mode) in [
        (base.as_path(), 0o711),
        (dir.as_path(), 0o711),
        (strict_socket.as_path(), 0o777),
        (open_socket.as_path(), 0o777),
    ] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let (s, o) = (strict.clone(), open.clone());
    tokio::task::spawn_blocking(move || {
        run_child_as_nobody(&s, &strict_socket, "refused");
        run_child_as_nobody(&o, &open_socket, "accepted");
    })
    .await
    .unwrap();
    assert_eq!(strict.stats().counters.protocol_errors, 0);
    assert_eq!(open.stats().counters.protocol_errors, 0);
    strict.shutdown().await.unwrap();
    open.shutdown().await.unwrap();
    std::fs::remove_dir_all(&base).unwrap();
}
