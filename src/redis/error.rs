//! Typed errors of the RESP admin client.
//!
//! Redis reports conditions such as a slot redirect or a node that is still loading as error
//! replies whose first word is a code. Callers need to react to those differently (retry,
//! follow, give up), so each code the operator cares about gets its own variant instead of a
//! string to match on.

use std::net::SocketAddr;
use std::time::Duration;

use redis_protocol::error::RedisProtocolErrorKind;

use crate::redis::codec::CodecError;

/// An error from talking to one Redis node.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The TCP connection could not be established.
    #[error("connect to {addr} failed: {source}")]
    Connect {
        /// The node's address.
        addr: SocketAddr,
        /// The underlying socket error.
        #[source]
        source: std::io::Error,
    },
    /// The TCP connection was not established within the connect timeout.
    #[error("connect to {addr} timed out after {after:?}")]
    ConnectTimeout {
        /// The node's address.
        addr: SocketAddr,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// A command got no (complete) reply within its timeout.
    #[error("{command} on {addr} timed out after {after:?}")]
    Timeout {
        /// The node's address.
        addr: SocketAddr,
        /// A short, secret-free description of the command.
        command: String,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// Reading or writing the socket failed.
    #[error("I/O error with {addr}: {source}")]
    Io {
        /// The node's address.
        addr: SocketAddr,
        /// The underlying socket error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes on the wire were not valid RESP.
    #[error("malformed RESP from {addr}: {details}")]
    Protocol {
        /// The node's address.
        addr: SocketAddr,
        /// What the decoder complained about.
        details: String,
    },
    /// A reply was larger than the limit (`Timeouts::max_reply_bytes`). The client closed the
    /// connection, as the rest of the reply was still on its way; the node's answer would be
    /// as large next time, so this is not transient.
    #[error("reply from {addr} exceeds the reply size limit of {limit} bytes; connection closed")]
    ReplyTooLarge {
        /// The node's address.
        addr: SocketAddr,
        /// The limit in bytes.
        limit: usize,
    },
    /// The peer closed the connection before replying.
    #[error("{addr} closed the connection")]
    Closed {
        /// The node's address.
        addr: SocketAddr,
    },
    /// An earlier command on this connection timed out, so its reply may still arrive and would
    /// be mistaken for the reply to a later command. The connection must be dropped.
    #[error("connection to {addr} is unusable after an earlier timeout or protocol error")]
    Poisoned {
        /// The node's address.
        addr: SocketAddr,
    },
    /// `-MOVED slot endpoint`: the slot is served by another node.
    #[error("MOVED {slot} {endpoint}")]
    Moved {
        /// The hash slot.
        slot: u16,
        /// `host:port` of the node that serves it.
        endpoint: String,
    },
    /// `-ASK slot endpoint`: the key is being migrated; ask the other node once.
    #[error("ASK {slot} {endpoint}")]
    Ask {
        /// The hash slot.
        slot: u16,
        /// `host:port` of the importing node.
        endpoint: String,
    },
    /// `-CLUSTERDOWN`: the cluster (or the slot) is not served right now.
    #[error("CLUSTERDOWN {0}")]
    ClusterDown(String),
    /// `-TRYAGAIN`: a multi-key command hit a slot in the middle of a migration.
    #[error("TRYAGAIN {0}")]
    TryAgain(String),
    /// `-LOADING`: the node is loading its dataset.
    #[error("LOADING {0}")]
    Loading(String),
    /// `-NOAUTH`: the node wants a password.
    #[error("NOAUTH {0}")]
    NoAuth(String),
    /// `-WRONGPASS` or `-NOPERM`: the credentials were refused or lack a permission.
    #[error("{code} {message}")]
    AuthRefused {
        /// `WRONGPASS` or `NOPERM`.
        code: String,
        /// The rest of the error line.
        message: String,
    },
    /// `-BUSYKEY`: a RESTORE or MIGRATE target already holds the key.
    #[error("BUSYKEY {0}")]
    BusyKey(String),
    /// Any other error reply, split into its code (first word) and message.
    #[error("{code} {message}")]
    Server {
        /// The first word of the reply, e.g. `ERR` or `IOERR`.
        code: String,
        /// The rest of the error line.
        message: String,
    },
    /// The reply had a type or shape the command never returns.
    #[error("unexpected reply to {command}: {reply}")]
    UnexpectedReply {
        /// A short description of the command.
        command: String,
        /// A bounded rendering of what came back.
        reply: String,
    },
    /// A textual reply (CLUSTER NODES, INFO, ...) could not be parsed.
    #[error("cannot parse reply to {command}: {source}")]
    Parse {
        /// A short description of the command.
        command: String,
        /// What the parser rejected.
        #[source]
        source: crate::redis::parse::ParseError,
    },
}

impl RedisError {
    /// Classifies an error reply line (without the leading `-`).
    pub fn from_reply_line(line: &str) -> Self {
        let (code, message) = match line.split_once(' ') {
            Some((code, rest)) => (code, rest),
            None => (line, ""),
        };
        let message_owned = message.to_owned();
        match code {
            "MOVED" | "ASK" => match parse_redirect(message) {
                Some((slot, endpoint)) if code == "MOVED" => Self::Moved { slot, endpoint },
                Some((slot, endpoint)) => Self::Ask { slot, endpoint },
                None => Self::Server {
                    code: code.to_owned(),
                    message: message_owned,
                },
            },
            "CLUSTERDOWN" => Self::ClusterDown(message_owned),
            "TRYAGAIN" => Self::TryAgain(message_owned),
            "LOADING" => Self::Loading(message_owned),
            "NOAUTH" => Self::NoAuth(message_owned),
            "WRONGPASS" | "NOPERM" => Self::AuthRefused {
                code: code.to_owned(),
                message: message_owned,
            },
            "BUSYKEY" => Self::BusyKey(message_owned),
            _ => Self::Server {
                code: code.to_owned(),
                message: message_owned,
            },
        }
    }

    /// Maps a codec error, keeping socket errors apart from malformed bytes.
    pub(crate) fn from_codec(addr: SocketAddr, err: CodecError) -> Self {
        let err = match err {
            CodecError::TooLarge { limit } => return Self::ReplyTooLarge { addr, limit },
            CodecError::Resp(err) => err,
        };
        let details = err.details().to_owned();
        match err.kind() {
            RedisProtocolErrorKind::IO(io) => Self::Io {
                addr,
                source: std::io::Error::new(io.kind(), io.to_string()),
            },
            kind => Self::Protocol {
                addr,
                details: format!("{}: {details}", kind.to_str()),
            },
        }
    }

    /// True for errors where the same command may succeed if simply repeated a bit later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::ConnectTimeout { .. }
                | Self::Connect { .. }
                | Self::Timeout { .. }
                | Self::Io { .. }
                | Self::Closed { .. }
                | Self::Poisoned { .. }
                | Self::ClusterDown(_)
                | Self::TryAgain(_)
                | Self::Loading(_)
        )
    }

    /// True when the reply was a server error with this code (e.g. `ERR`, `IOERR`).
    pub fn has_code(&self, wanted: &str) -> bool {
        matches!(self, Self::Server { code, .. } if code == wanted)
    }

    /// True when the reply was a server error whose message contains `needle`.
    pub fn message_contains(&self, needle: &str) -> bool {
        match self {
            Self::Server { message, .. }
            | Self::AuthRefused { message, .. }
            | Self::ClusterDown(message)
            | Self::TryAgain(message)
            | Self::Loading(message)
            | Self::NoAuth(message)
            | Self::BusyKey(message) => message.contains(needle),
            _ => false,
        }
    }
}

fn parse_redirect(message: &str) -> Option<(u16, String)> {
    let (slot, endpoint) = message.split_once(' ')?;
    let slot: u16 = slot.parse().ok()?;
    if endpoint.is_empty() || endpoint.contains(' ') {
        return None;
    }
    Some((slot, endpoint.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_redirects_and_codes() {
        assert!(matches!(
            RedisError::from_reply_line("MOVED 3999 127.0.0.1:6381"),
            RedisError::Moved { slot: 3999, ref endpoint } if endpoint == "127.0.0.1:6381"
        ));
        assert!(matches!(
            RedisError::from_reply_line("ASK 1 10.0.0.1:6379"),
            RedisError::Ask { slot: 1, .. }
        ));
        assert!(matches!(
            RedisError::from_reply_line("CLUSTERDOWN The cluster is down"),
            RedisError::ClusterDown(_)
        ));
        assert!(matches!(
            RedisError::from_reply_line("BUSYKEY Target key name already exists."),
            RedisError::BusyKey(_)
        ));
        assert!(matches!(
            RedisError::from_reply_line("WRONGPASS invalid username-password pair"),
            RedisError::AuthRefused { .. }
        ));
        assert!(RedisError::from_reply_line("ERR Unknown node abc").has_code("ERR"));
        // A redirect without a parsable slot is kept as a plain server error, not a panic.
        assert!(matches!(
            RedisError::from_reply_line("MOVED x"),
            RedisError::Server { .. }
        ));
        assert!(matches!(
            RedisError::from_reply_line(""),
            RedisError::Server { .. }
        ));
    }
}
