//! Handlers `am serve` adds to the demo set.

use active_message::ActiveMessageManager;
use active_message::handler_impls::unary_handler;

/// Registers `echo_json`: a bytes handler that takes a JSON document and
/// answers it in compact form; input that is not JSON is a handler error.
pub async fn register(manager: &ActiveMessageManager) -> active_message::Result<()> {
    manager
        .register_handler(
            "echo_json",
            unary_handler("echo_json", |c| {
                let value: serde_json::Value =
                    serde_json::from_slice(&c.payload).map_err(|e| format!("not JSON: {e}"))?;
                let out = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
                Ok(Some(out.into()))
            }),
        )
        .await
}
