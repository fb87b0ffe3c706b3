//! The default user's passwords (`ACL GETUSER/SETUSER default`) and `masterauth`: what a live
//! password rotation reads and changes. Passwords are added and removed by their SHA-256
//! (`#<hash>`, `!<hash>`), the form `ACL GETUSER` lists them in, so a plaintext password
//! travels only where Redis needs it verbatim (`masterauth`).

use std::collections::BTreeSet;
use std::net::SocketAddr;

use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;

use crate::redis::command::Cmd;
use crate::redis::ops::{ClusterAdmin, OpError};
use crate::redis::reply;

/// What one member holds for authentication.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberAuth {
    /// SHA-256 (lowercase hex) of every password the default user accepts.
    pub passwords: BTreeSet<String>,
    /// SHA-256 of its `masterauth` (what it authenticates to its leader with).
    pub masterauth: String,
}

/// SHA-256 of `password`, lowercase hex: how `ACL GETUSER` lists it.
pub fn password_hash(password: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, password.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl ClusterAdmin {
    /// The default user's password hashes and the `masterauth` hash of the member at `addr`.
    ///
    /// # Errors
    /// The member is unreachable or answers something else than Redis 7 does.
    pub async fn member_auth(&self, addr: SocketAddr) -> Result<MemberAuth, OpError> {
        let mut client = self.connect(addr).await?;
        let getuser = Cmd::new("ACL").arg("GETUSER").arg("default");
        let frame = client.call(&getuser).await.map_err(OpError::node(addr))?;
        let passwords = passwords_of(&getuser, frame).map_err(OpError::node(addr))?;
        let get = Cmd::new("CONFIG").arg("GET").arg("masterauth");
        let frame = client.call(&get).await.map_err(OpError::node(addr))?;
        let pair = reply::bytes_array(&get, frame).map_err(OpError::node(addr))?;
        let masterauth = pair.get(1).map(Bytes::as_ref).unwrap_or_default();
        Ok(MemberAuth {
            passwords,
            masterauth: password_hash(&String::from_utf8_lossy(masterauth)),
        })
    }

    /// Makes the default user of the member at `addr` accept the passwords hashed `add` and
    /// refuse those hashed `remove`, in one `ACL SETUSER` (all or none).
    ///
    /// # Errors
    /// The member is unreachable or refuses the change.
    pub async fn set_passwords(
        &self,
        addr: SocketAddr,
        add: &[String],
        remove: &[String],
    ) -> Result<(), OpError> {
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let mut cmd = Cmd::new("ACL").arg("SETUSER").arg("default");
        for hash in add {
            cmd = cmd.arg(format!("#{hash}"));
        }
        for hash in remove {
            cmd = cmd.arg(format!("!{hash}"));
        }
        let frame = self.call_once(addr, &cmd).await?;
        reply::ok(&cmd, frame).map_err(OpError::node(addr))
    }
}

/// The `passwords` field of an `ACL GETUSER` reply (a flat key/value array).
fn passwords_of(
    cmd: &Cmd,
    frame: BytesFrame,
) -> Result<BTreeSet<String>, crate::redis::RedisError> {
    let fields = reply::array(cmd, frame)?;
    let mut it = fields.into_iter();
    while let Some(key) = it.next() {
        let value = it.next();
        let is_passwords = matches!(&key, BytesFrame::BulkString(k) | BytesFrame::SimpleString(k) if k.as_ref() == b"passwords");
        if let (true, Some(value)) = (is_passwords, value) {
            return Ok(reply::bytes_array(cmd, value)?
                .iter()
                .map(|h| String::from_utf8_lossy(h).to_ascii_lowercase())
                .collect());
        }
    }
    Ok(BTreeSet::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> BytesFrame {
        BytesFrame::BulkString(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn hashes_are_what_acl_getuser_lists() {
        // echo -n pw | sha256sum
        assert_eq!(
            password_hash("pw"),
            "30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4"
        );
    }

    #[test]
    fn the_passwords_field_is_read_from_a_getuser_reply() {
        let cmd = Cmd::new("ACL");
        let reply = BytesFrame::Array(vec![
            bulk("flags"),
            BytesFrame::Array(vec![bulk("on")]),
            bulk("passwords"),
            BytesFrame::Array(vec![bulk("AB"), bulk("cd")]),
            bulk("commands"),
            bulk("+@all"),
        ]);
        let got = passwords_of(&cmd, reply).unwrap();
        assert_eq!(got, BTreeSet::from(["ab".to_string(), "cd".to_string()]));
        let none = BytesFrame::Array(vec![bulk("flags"), BytesFrame::Array(vec![])]);
        assert!(passwords_of(&cmd, none).unwrap().is_empty());
        assert!(passwords_of(&cmd, BytesFrame::Integer(1)).is_err());
    }
}
