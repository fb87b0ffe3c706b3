//! Commands as arrays of bulk strings, plus constructors for the admin commands the operator
//! sends.
//!
//! Every argument travels as a bulk string so keys, node ids and passwords never need quoting
//! or escaping, whatever bytes they hold.

use std::net::SocketAddr;

use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;

use crate::redis::ids::{NodeId, SlotRange};

/// One Redis command: its name followed by its arguments.
///
/// `Debug` shows only what [`Cmd::describe`] shows plus the number of further arguments, e.g.
/// `Cmd(CONFIG SET, 2 args)`: arguments may be passwords (`AUTH`, `HELLO … AUTH`,
/// `MIGRATE … AUTH/AUTH2`, `CONFIG SET masterauth/requirepass`), and a `{:?}` in a log line or
/// an error must never carry one. The full arguments stay available through [`Cmd::args`].
#[derive(Clone, PartialEq, Eq)]
pub struct Cmd {
    args: Vec<Bytes>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (described, words) = self.describe_words();
        let rest = self.args.len().saturating_sub(words);
        let plural = if rest == 1 { "" } else { "s" };
        write!(f, "Cmd({described}, {rest} arg{plural})")
    }
}

impl Cmd {
    /// Starts a command with its name (e.g. `"CLUSTER"`).
    pub fn new(name: &str) -> Self {
        Self {
            args: vec![Bytes::copy_from_slice(name.as_bytes())],
        }
    }

    /// Appends an argument, copying it.
    #[must_use]
    pub fn arg(mut self, arg: impl AsRef<[u8]>) -> Self {
        self.args.push(Bytes::copy_from_slice(arg.as_ref()));
        self
    }

    /// Appends an argument without copying (for keys and values already held as `Bytes`).
    #[must_use]
    pub fn arg_bytes(mut self, arg: Bytes) -> Self {
        self.args.push(arg);
        self
    }

    /// Appends an integer argument in decimal.
    #[must_use]
    pub fn arg_int(self, value: impl Into<i128>) -> Self {
        let value: i128 = value.into();
        self.arg(value.to_string())
    }

    /// The arguments, name first.
    pub fn args(&self) -> &[Bytes] {
        &self.args
    }

    /// A short description for errors and logs. It names the command (and the subcommand for
    /// container commands) but never the other arguments, because AUTH and MIGRATE carry
    /// passwords.
    pub fn describe(&self) -> String {
        self.describe_words().0
    }

    /// The description and how many leading arguments (name, subcommand) it shows.
    fn describe_words(&self) -> (String, usize) {
        let word = |i: usize| {
            self.args
                .get(i)
                .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
        };
        let name = word(0).unwrap_or_default();
        let shown = usize::from(!self.args.is_empty());
        match name.as_str() {
            "CLUSTER" | "CONFIG" | "CLIENT" | "INFO" | "MEMORY" | "DEBUG" => match word(1) {
                // A subcommand is a short keyword; anything longer is shown as an argument
                // count only, like every other argument.
                Some(sub) if sub.len() <= 32 => (format!("{name} {sub}"), 2),
                _ => (name, shown),
            },
            _ => (name, shown),
        }
    }

    /// The RESP2 frame for the wire.
    pub fn to_frame(&self) -> BytesFrame {
        BytesFrame::Array(
            self.args
                .iter()
                .cloned()
                .map(BytesFrame::BulkString)
                .collect(),
        )
    }

    /// `PING`.
    pub fn ping() -> Self {
        Self::new("PING")
    }

    /// `AUTH [username] password`.
    pub fn auth(username: Option<&str>, password: &str) -> Self {
        let cmd = Self::new("AUTH");
        match username {
            Some(user) => cmd.arg(user).arg(password),
            None => cmd.arg(password),
        }
    }

    /// `CLUSTER <sub>` with no further arguments (NODES, INFO, SHARDS, MYID, ...).
    pub fn cluster(sub: &str) -> Self {
        Self::new("CLUSTER").arg(sub)
    }

    /// `INFO <section>`.
    pub fn info(section: &str) -> Self {
        Self::new("INFO").arg(section)
    }

    /// `DBSIZE`.
    pub fn dbsize() -> Self {
        Self::new("DBSIZE")
    }

    /// `CLUSTER MEET ip port [bus-port]`. MEET takes an IP literal only, hence a `SocketAddr`.
    pub fn cluster_meet(addr: SocketAddr, bus_port: Option<u16>) -> Self {
        let cmd = Self::cluster("MEET")
            .arg(addr.ip().to_string())
            .arg_int(addr.port());
        match bus_port {
            Some(bus) => cmd.arg_int(bus),
            None => cmd,
        }
    }

    /// `CLUSTER ADDSLOTSRANGE start end [start end ...]`.
    pub fn cluster_addslotsrange(ranges: &[SlotRange]) -> Self {
        ranges
            .iter()
            .fold(Self::cluster("ADDSLOTSRANGE"), |cmd, r| {
                cmd.arg_int(r.start).arg_int(r.end)
            })
    }

    /// `CLUSTER REPLICATE node-id`.
    pub fn cluster_replicate(master: &NodeId) -> Self {
        Self::cluster("REPLICATE").arg(master.as_str())
    }

    /// `CLUSTER FORGET node-id`.
    pub fn cluster_forget(node: &NodeId) -> Self {
        Self::cluster("FORGET").arg(node.as_str())
    }

    /// `CLUSTER SET-CONFIG-EPOCH epoch`.
    pub fn cluster_set_config_epoch(epoch: u64) -> Self {
        Self::cluster("SET-CONFIG-EPOCH").arg_int(epoch)
    }

    /// `CLUSTER SETSLOT slot IMPORTING source-id`.
    pub fn setslot_importing(slot: u16, source: &NodeId) -> Self {
        Self::cluster("SETSLOT")
            .arg_int(slot)
            .arg("IMPORTING")
            .arg(source.as_str())
    }

    /// `CLUSTER SETSLOT slot MIGRATING target-id`.
    pub fn setslot_migrating(slot: u16, target: &NodeId) -> Self {
        Self::cluster("SETSLOT")
            .arg_int(slot)
            .arg("MIGRATING")
            .arg(target.as_str())
    }

    /// `CLUSTER SETSLOT slot NODE owner-id`.
    pub fn setslot_node(slot: u16, owner: &NodeId) -> Self {
        Self::cluster("SETSLOT")
            .arg_int(slot)
            .arg("NODE")
            .arg(owner.as_str())
    }

    /// `CLUSTER SETSLOT slot STABLE`.
    pub fn setslot_stable(slot: u16) -> Self {
        Self::cluster("SETSLOT").arg_int(slot).arg("STABLE")
    }

    /// `CLUSTER COUNTKEYSINSLOT slot`.
    pub fn countkeysinslot(slot: u16) -> Self {
        Self::cluster("COUNTKEYSINSLOT").arg_int(slot)
    }

    /// `CLUSTER GETKEYSINSLOT slot count`.
    pub fn getkeysinslot(slot: u16, count: usize) -> Self {
        Self::cluster("GETKEYSINSLOT")
            .arg_int(slot)
            .arg_int(count as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_never_shows_secrets() {
        let auth = Cmd::auth(Some("admin"), "s3cret");
        assert_eq!(auth.describe(), "AUTH");
        assert_eq!(Cmd::cluster("nodes").describe(), "CLUSTER NODES");
        let migrate = Cmd::new("MIGRATE").arg("10.0.0.1").arg("AUTH").arg("pw");
        assert!(!migrate.describe().contains("pw"));
    }

    /// Every command the operator (or a future caller) may send with a password in it.
    fn commands_with_secrets() -> Vec<Cmd> {
        vec![
            Cmd::auth(None, "s3cret-pw"),
            Cmd::auth(Some("admin"), "s3cret-pw"),
            Cmd::new("HELLO")
                .arg("3")
                .arg("AUTH")
                .arg("admin")
                .arg("s3cret-pw"),
            Cmd::new("MIGRATE")
                .arg("10.0.0.1")
                .arg_int(6379)
                .arg("")
                .arg_int(0)
                .arg_int(5000)
                .arg("AUTH")
                .arg("s3cret-pw")
                .arg("KEYS")
                .arg("k"),
            Cmd::new("MIGRATE")
                .arg("10.0.0.1")
                .arg_int(6379)
                .arg("")
                .arg_int(0)
                .arg_int(5000)
                .arg("AUTH2")
                .arg("admin")
                .arg("s3cret-pw"),
            Cmd::new("CONFIG")
                .arg("SET")
                .arg("masterauth")
                .arg("s3cret-pw"),
            Cmd::new("config")
                .arg("set")
                .arg("requirepass")
                .arg("s3cret-pw")
                .arg("masterauth")
                .arg("s3cret-pw"),
            // A "subcommand" too long to be a keyword is not shown either.
            Cmd::new("CONFIG").arg("s3cret-pw".repeat(8)),
        ]
    }

    #[test]
    fn debug_never_shows_secrets() {
        for cmd in commands_with_secrets() {
            for text in [format!("{cmd:?}"), format!("{cmd:#?}"), cmd.describe()] {
                assert!(!text.contains("s3cret"), "{text}");
                assert!(!text.contains("admin"), "{text}");
            }
        }
        let set = Cmd::new("CONFIG").arg("SET").arg("masterauth").arg("pw");
        assert_eq!(format!("{set:?}"), "Cmd(CONFIG SET, 2 args)");
        assert_eq!(format!("{:?}", Cmd::auth(None, "pw")), "Cmd(AUTH, 1 arg)");
        assert_eq!(format!("{:?}", Cmd::ping()), "Cmd(PING, 0 args)");
        // Debug of containers holding commands (pipelines) goes through the same impl.
        let pipeline = format!("{:?}", commands_with_secrets());
        assert!(!pipeline.contains("s3cret"), "{pipeline}");
    }

    #[test]
    fn errors_built_from_a_command_never_show_secrets() {
        use crate::redis::error::RedisError;
        use crate::redis::reply;
        for cmd in commands_with_secrets() {
            let errors = [
                reply::ok(&cmd, BytesFrame::Integer(1)).map(|_| ()),
                reply::opt_bytes(&cmd, BytesFrame::Integer(1)).map(|_| ()),
                Err(RedisError::Timeout {
                    addr: "127.0.0.1:6379".parse().expect("addr"),
                    command: cmd.describe(),
                    after: std::time::Duration::from_secs(1),
                }),
            ];
            for err in errors.into_iter().filter_map(Result::err) {
                for text in [err.to_string(), format!("{err:?}")] {
                    assert!(!text.contains("s3cret"), "{text}");
                }
            }
        }
    }

    #[test]
    fn frames_every_argument_as_bulk_string() {
        let frame = Cmd::new("SET").arg("a b").arg_int(-3).to_frame();
        assert_eq!(
            frame,
            BytesFrame::Array(vec![
                BytesFrame::BulkString(Bytes::from_static(b"SET")),
                BytesFrame::BulkString(Bytes::from_static(b"a b")),
                BytesFrame::BulkString(Bytes::from_static(b"-3")),
            ])
        );
    }
}
