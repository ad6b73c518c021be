//! A server child with the benchmark handlers and a client manager in this
//! process connected to it: what every active-message case starts with.

use active_message::{ActiveMessageManager, PeerInfo};
use anyhow::{Context, Result, bail};

use crate::am::Client;
use crate::am_server::builder;
use crate::util::{Peer, kv};

/// A running server child and this process's manager, connected.
pub struct Session {
    peer: Peer,
    manager: ActiveMessageManager,
    /// The client side, aimed at the server.
    pub c: Client,
}

impl Session {
    /// Spawns an `am_server` child for `transport` (`tcp`/`shm`), wait `policy` and
    /// ring capacity `ring` (0: default), builds a manager of the same
    /// configuration here and connects it to the child.
    pub async fn start(transport: &str, policy: &str, ring: usize) -> Result<Session> {
        let peer = Peer::spawn(
            "am_server",
            &kv(&[
                ("transport", &transport),
                ("policy", &policy),
                ("ring", &ring),
            ]),
        )?;
        let (json, _) = peer.ctl.recv().context("server PeerInfo")?;
        if let Some(why) = json.strip_prefix("error: ") {
            bail!("server: {why}");
        }
        let info: PeerInfo = serde_json::from_str(&json).context("server PeerInfo")?;
        let manager = builder(transport, policy, ring)?.build().await?;
        let client = manager.client();
        client.connect_to_peer(info.clone()).await?;
        let c = Client {
            client,
            target: info.instance_id,
        };
        Ok(Session { peer, manager, c })
    }

    /// Tells the server to stop, shuts this side's manager down and waits for
    /// the child to exit.
    pub async fn stop(self) -> Result<()> {
        // A child that is already gone fails `finish` below, with its status.
        let _ = self.peer.ctl.send("stop", &[]);
        self.manager.shutdown().await?;
        self.peer.finish()
    }
}
