//! The RESP2 admin connection to one Redis node.
//!
//! Every network step (connect, send, each reply) runs under a timeout, because a pod IP that
//! was reassigned or black-holed would otherwise hang the reconcile loop the way
//! `redis-cli --cluster` does. After a timeout or a framing error the connection is marked
//! poisoned: a late reply could otherwise be read as the answer to the next command, and
//! closed, which also frees its read buffer. A reply larger than `Timeouts::max_reply_bytes`
//! ends the connection the same way ([`RedisError::ReplyTooLarge`]).
//!
//! With [`AdminOptions::tls`] set the socket is wrapped in TLS ([`crate::redis::tls`]) before
//! anything is sent; the handshake counts against the connect timeout, and frames are read
//! and written through the same code either way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use redis_protocol::resp2::types::BytesFrame;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::redis::codec::{DEFAULT_MAX_REPLY_BYTES, GuardedResp2};
use crate::redis::command::Cmd;
use crate::redis::error::RedisError;
use crate::redis::tls::{Stream, TlsOptions};

/// Credentials for `AUTH`: an optional ACL username plus the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Auth {
    /// The ACL user; `None` authenticates as the `default` user (`AUTH password`).
    pub username: Option<String>,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password must never reach logs through a derived Debug.
        f.debug_struct("Auth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Limits for talking to Redis: time for every network step, and the size of one reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Limit for establishing the TCP connection (and the AUTH that follows).
    pub connect: Duration,
    /// Limit for each ordinary command's reply.
    pub command: Duration,
    /// The `timeout` argument of MIGRATE: the longest the source may wait on the target
    /// without progress. The client waits for a MIGRATE reply for twice this plus `command`.
    pub migrate: Duration,
    /// The largest reply accepted, in bytes (default [`DEFAULT_MAX_REPLY_BYTES`], 64 MiB). A
    /// member runs the user's image and may answer anything; a larger reply closes the
    /// connection with [`RedisError::ReplyTooLarge`], so the operator's memory stays bounded
    /// by this limit (plus one socket read) per connection.
    pub max_reply_bytes: usize,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            command: Duration::from_secs(5),
            migrate: Duration::from_secs(10),
            max_reply_bytes: DEFAULT_MAX_REPLY_BYTES,
        }
    }
}

/// How to reach nodes: credentials, time limits, the reply size limit and TLS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdminOptions {
    /// Credentials sent with `AUTH` right after connecting, if any.
    pub auth: Option<Auth>,
    /// Time limits for every network step.
    pub timeouts: Timeouts,
    /// Speak TLS with these settings; `None` is plain TCP. Shared, as the prepared rustls
    /// configuration is built once.
    pub tls: Option<Arc<TlsOptions>>,
}

/// The reply frame type: RESP2 frames backed by `Bytes`.
pub type Frame = BytesFrame;

/// An open, authenticated admin connection to one node.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    /// `None` once a transport failure closed the connection.
    io: Option<Framed<Stream, GuardedResp2>>,
    command_timeout: Duration,
    poisoned: bool,
}

impl Client {
    /// Connects (TCP, then the TLS handshake when `options.tls` is set) within
    /// `options.timeouts.connect`, then authenticates when `options.auth` is set, within the
    /// same limit again.
    pub async fn connect(addr: SocketAddr, options: &AdminOptions) -> Result<Self, RedisError> {
        let limit = options.timeouts.connect;
        let stream = match tokio::time::timeout(limit, dial(addr, options.tls.as_deref())).await {
            Err(_) => return Err(RedisError::ConnectTimeout { addr, after: limit }),
            Ok(result) => result?,
        };
        let mut client = Self {
            addr,
            io: Some(Framed::new(
                stream,
                GuardedResp2::with_max_reply(options.timeouts.max_reply_bytes),
            )),
            command_timeout: options.timeouts.command,
            poisoned: false,
        };
        if let Some(auth) = &options.auth {
            let cmd = Cmd::auth(auth.username.as_deref(), &auth.password);
            client.call_with_timeout(&cmd, limit).await?;
        }
        Ok(client)
    }

    /// The node this connection talks to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Hands over the byte stream and whatever was read past the last reply, for a protocol
    /// that leaves RESP after a command (`SYNC` answers with a raw RDB transfer).
    pub(crate) fn into_stream(mut self) -> Result<(Stream, BytesMut), RedisError> {
        let addr = self.addr;
        match self.io.take() {
            Some(io) if !self.poisoned => {
                let parts = io.into_parts();
                Ok((parts.io, parts.read_buf))
            }
            _ => Err(RedisError::Poisoned { addr }),
        }
    }

    /// Whether an earlier failure made this connection unusable.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned || self.io.is_none()
    }

    /// Sends one command and waits for its reply within the command timeout. Error replies come
    /// back as typed [`RedisError`]s.
    pub async fn call(&mut self, cmd: &Cmd) -> Result<Frame, RedisError> {
        self.call_with_timeout(cmd, self.command_timeout).await
    }

    /// Like [`Client::call`] with an explicit timeout, for slow commands such as MIGRATE.
    pub async fn call_with_timeout(
        &mut self,
        cmd: &Cmd,
        limit: Duration,
    ) -> Result<Frame, RedisError> {
        let mut replies = self
            .pipeline_with_timeout(std::slice::from_ref(cmd), limit)
            .await?;
        match replies.pop() {
            Some(reply) => reply,
            None => Err(RedisError::Closed { addr: self.addr }),
        }
    }

    /// Sends several commands in one write and reads their replies in order. The outer error is
    /// a transport failure (the connection is then poisoned); the inner results are the
    /// per-command replies. Each reply must arrive within the command timeout of the previous
    /// one, so a long pipeline is not cut short while the node is making progress.
    pub async fn pipeline(
        &mut self,
        cmds: &[Cmd],
    ) -> Result<Vec<Result<Frame, RedisError>>, RedisError> {
        self.pipeline_with_timeout(cmds, self.command_timeout).await
    }

    /// Like [`Client::pipeline`] with an explicit per-reply timeout.
    pub async fn pipeline_with_timeout(
        &mut self,
        cmds: &[Cmd],
        limit: Duration,
    ) -> Result<Vec<Result<Frame, RedisError>>, RedisError> {
        let addr = self.addr;
        if self.poisoned {
            return Err(RedisError::Poisoned { addr });
        }
        let Some(io) = self.io.as_mut() else {
            return Err(RedisError::Poisoned { addr });
        };
        // Until every reply is read the stream is out of step with what we sent.
        self.poisoned = true;
        let result = exchange(io, addr, cmds, limit).await;
        match &result {
            Ok(_) => self.poisoned = false,
            // Nothing more can be read from this stream reliably: close it, so the peer sees
            // it and a half-read (possibly huge) reply is freed now rather than when the
            // client is dropped.
            Err(_) => self.io = None,
        }
        result
    }
}

/// Opens the TCP connection and, with `tls`, runs the handshake on it.
async fn dial(addr: SocketAddr, tls: Option<&TlsOptions>) -> Result<Stream, RedisError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|source| RedisError::Connect { addr, source })?;
    // Admin traffic is small request/reply pairs; Nagle would only add latency.
    tcp.set_nodelay(true)
        .map_err(|source| RedisError::Io { addr, source })?;
    match tls {
        None => Ok(Stream::Plain(tcp)),
        Some(tls) => tls.handshake(addr, tcp).await,
    }
}

/// A secret-free description of a pipeline for errors: its first command and how many follow.
fn describe(cmds: &[Cmd]) -> String {
    cmds.first()
        .map(|c| {
            if cmds.len() > 1 {
                format!("{} (+{} pipelined)", c.describe(), cmds.len() - 1)
            } else {
                c.describe()
            }
        })
        .unwrap_or_default()
}

/// Writes `cmds` and reads one reply for each, every step within `limit`.
async fn exchange(
    io: &mut Framed<Stream, GuardedResp2>,
    addr: SocketAddr,
    cmds: &[Cmd],
    limit: Duration,
) -> Result<Vec<Result<Frame, RedisError>>, RedisError> {
    let timeout_err = |command: String| RedisError::Timeout {
        addr,
        command,
        after: limit,
    };
    let send = async {
        for cmd in cmds {
            io.feed(cmd.to_frame()).await?;
        }
        SinkExt::<BytesFrame>::flush(io).await
    };
    match tokio::time::timeout(limit, send).await {
        Err(_) => return Err(timeout_err(describe(cmds))),
        Ok(Err(e)) => return Err(RedisError::from_codec(addr, e)),
        Ok(Ok(())) => {}
    }
    let mut replies = Vec::with_capacity(cmds.len());
    for cmd in cmds {
        let frame = match tokio::time::timeout(limit, io.next()).await {
            Err(_) => return Err(timeout_err(cmd.describe())),
            Ok(None) => return Err(RedisError::Closed { addr }),
            Ok(Some(Err(e))) => return Err(RedisError::from_codec(addr, e)),
            Ok(Some(Ok(frame))) => frame,
        };
        replies.push(match frame {
            BytesFrame::Error(line) => Err(RedisError::from_reply_line(&line)),
            other => Ok(other),
        });
    }
    Ok(replies)
}
