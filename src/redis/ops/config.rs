//! Runtime configuration (`CONFIG SET`).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::redis::command::Cmd;
use crate::redis::ops::{ClusterAdmin, OpError};
use crate::redis::reply;

impl ClusterAdmin {
    /// Sets `settings` on the node at `addr` in one `CONFIG SET` (Redis 7 applies several
    /// pairs all or none: a refused value leaves every setting as it was).
    ///
    /// # Errors
    /// The node is unreachable, or refuses a key or value (the error carries Redis's reason).
    pub async fn config_set(
        &self,
        addr: SocketAddr,
        settings: &BTreeMap<String, String>,
    ) -> Result<(), OpError> {
        if settings.is_empty() {
            return Ok(());
        }
        let mut cmd = Cmd::new("CONFIG").arg("SET");
        for (k, v) in settings {
            cmd = cmd.arg(k).arg(v);
        }
        let frame = self.call_once(addr, &cmd).await?;
        reply::ok(&cmd, frame).map_err(OpError::node(addr))
    }
}
