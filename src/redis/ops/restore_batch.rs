//! One pipelined batch of `RESTORE`s to one master, run as its own task by
//! [`super::restore_stream`]: sent (again on a new connection after a transport failure, a
//! bounded number of times), each reply classified, the keys that answered `BUSYKEY` sent once
//! more with `REPLACE` where that is right ([`on_busy`]), and what must go elsewhere (`MOVED`,
//! `ASK`) handed back.

use std::net::SocketAddr;
use std::time::Duration;

use crate::redis::client::{AdminOptions, Client, Frame};
use crate::redis::command::Cmd;
use crate::redis::error::RedisError;
use crate::redis::ops::restore::{restore_key, with_replace};
use crate::redis::ops::restore_route::{
    BusyAction, RestoreError, RestoreLimits, RestoreMode, Verdict, classify, on_busy,
};
use crate::redis::rdb::printable_key;

/// Commands for one master, sent as one pipeline.
pub(crate) struct Batch {
    pub(crate) cmds: Vec<Cmd>,
    pub(crate) bytes: usize,
    /// Each command is preceded by `ASKING` (the slot is being imported there).
    pub(crate) asking: bool,
}

impl Batch {
    pub(crate) fn new(cmds: Vec<Cmd>, asking: bool) -> Self {
        let bytes = cmds
            .iter()
            .flat_map(|c| c.args().iter().map(|a| a.len()))
            .sum();
        Self {
            cmds,
            bytes,
            asking,
        }
    }
}

/// What a batch's task hands back.
pub(crate) struct Done {
    pub(crate) addr: SocketAddr,
    /// The connection, when still usable.
    pub(crate) client: Option<Client>,
    pub(crate) bytes: usize,
    pub(crate) restored: u64,
    pub(crate) replaced: u64,
    /// Commands to send again to the slot's owner after a new slot map.
    pub(crate) reroute: Vec<Cmd>,
    /// Commands to send again once to another node, after `ASKING`.
    pub(crate) ask: Vec<(SocketAddr, Cmd)>,
    /// Pipelines sent again on a new connection after a transport failure.
    pub(crate) retries: u32,
    pub(crate) error: Option<RestoreError>,
}

/// What a batch's task needs.
pub(crate) struct Job {
    pub(crate) addr: SocketAddr,
    pub(crate) options: AdminOptions,
    pub(crate) mode: RestoreMode,
    pub(crate) limits: RestoreLimits,
}

impl Job {
    /// Sends `batch`, then the `REPLACE` for the keys that were busy where that is right.
    pub(crate) async fn run(self, client: Option<Client>, batch: Batch) -> Done {
        let mut done = Done {
            addr: self.addr,
            client,
            bytes: batch.bytes,
            restored: 0,
            replaced: 0,
            reroute: Vec::new(),
            ask: Vec::new(),
            retries: 0,
            error: None,
        };
        if let Err(e) = self.run_inner(&mut done, batch).await {
            done.error = Some(e);
        }
        if done.client.as_ref().is_some_and(Client::is_poisoned) {
            done.client = None;
        }
        done
    }

    async fn run_inner(&self, done: &mut Done, batch: Batch) -> Result<(), RestoreError> {
        let (replies, resent) = self
            .exchange(&mut done.client, &mut done.retries, &batch)
            .await?;
        let mut busy = Vec::new();
        for (cmd, reply) in batch.cmds.into_iter().zip(replies) {
            match self.verdict(&cmd, reply, done)? {
                Some(Verdict::Busy) => match on_busy(self.mode, resent) {
                    BusyAction::Replace => busy.push(with_replace(cmd)),
                    BusyAction::Conflict => {
                        return Err(RestoreError::Busy {
                            key: printable_key(restore_key(&cmd)),
                            addr: self.addr,
                        });
                    }
                },
                Some(_) => done.restored += 1,
                None => {}
            }
        }
        if busy.is_empty() {
            return Ok(());
        }
        let batch = Batch::new(busy, batch.asking);
        let (replies, _) = self
            .exchange(&mut done.client, &mut done.retries, &batch)
            .await?;
        for (cmd, reply) in batch.cmds.into_iter().zip(replies) {
            match self.verdict(&cmd, reply, done)? {
                Some(Verdict::Busy) => {
                    return Err(RestoreError::Reply {
                        key: printable_key(restore_key(&cmd)),
                        addr: self.addr,
                        reply: "BUSYKEY in spite of REPLACE".to_owned(),
                    });
                }
                Some(_) => done.replaced += 1,
                None => {}
            }
        }
        Ok(())
    }

    /// Books a reply that asks for re-sending in `done`; `Some` for `Restored` and `Busy`,
    /// `None` when booked, an error for a refusal.
    fn verdict(
        &self,
        cmd: &Cmd,
        reply: Result<Frame, RedisError>,
        done: &mut Done,
    ) -> Result<Option<Verdict>, RestoreError> {
        match classify(reply) {
            verdict @ (Verdict::Restored | Verdict::Busy) => Ok(Some(verdict)),
            Verdict::Reroute => {
                done.reroute.push(cmd.clone());
                Ok(None)
            }
            Verdict::Ask(to) => {
                done.ask.push((to, cmd.clone()));
                Ok(None)
            }
            Verdict::Failed(reply) => Err(RestoreError::Reply {
                key: printable_key(restore_key(cmd)),
                addr: self.addr,
                reply,
            }),
        }
    }

    /// Sends the batch as one pipeline, again on a new connection after a transport failure
    /// (a bounded number of times); returns the replies to its commands and whether it was
    /// re-sent after a failure that may have followed the send.
    async fn exchange(
        &self,
        client: &mut Option<Client>,
        retries: &mut u32,
        batch: &Batch,
    ) -> Result<(Vec<Result<Frame, RedisError>>, bool), RestoreError> {
        let wire: Vec<Cmd> = if batch.asking {
            batch
                .cmds
                .iter()
                .flat_map(|c| [Cmd::new("ASKING"), c.clone()])
                .collect()
        } else {
            batch.cmds.clone()
        };
        let mut resent = false;
        let mut attempt = 0;
        loop {
            let result = match client.as_mut().filter(|c| !c.is_poisoned()) {
                Some(conn) => {
                    conn.pipeline_with_timeout(&wire, self.limits.reply_timeout)
                        .await
                }
                None => match Client::connect(self.addr, &self.options).await {
                    Ok(conn) => {
                        client
                            .insert(conn)
                            .pipeline_with_timeout(&wire, self.limits.reply_timeout)
                            .await
                    }
                    Err(e) => Err(e),
                },
            };
            match result {
                Ok(replies) if batch.asking => {
                    return Ok((replies.into_iter().skip(1).step_by(2).collect(), resent));
                }
                Ok(replies) => return Ok((replies, resent)),
                Err(e) if e.is_transient() && attempt < self.limits.connection_retries => {
                    attempt += 1;
                    *retries += 1;
                    // A refused connection sent nothing; anything later may have.
                    resent |= !matches!(
                        e,
                        RedisError::Connect { .. } | RedisError::ConnectTimeout { .. }
                    );
                    *client = None;
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                Err(e) => return Err(RestoreError::redis(self.addr)(e)),
            }
        }
    }
}
