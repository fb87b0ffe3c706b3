//! Checked conversions of reply frames into Rust values.
//!
//! A reply of the wrong type is an [`RedisError::UnexpectedReply`], never a panic: a proxy, a
//! different server version or a garbled stream must not take the operator down.

use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;

use crate::redis::command::Cmd;
use crate::redis::error::RedisError;

/// Longest rendering of an unexpected reply kept in an error.
const MAX_RENDER: usize = 200;

/// Renders a frame for an error message, bounded in length.
pub fn render(frame: &BytesFrame) -> String {
    let text = match frame {
        BytesFrame::SimpleString(b) => format!("+{}", String::from_utf8_lossy(b)),
        BytesFrame::Error(e) => format!("-{}", &**e),
        BytesFrame::Integer(i) => format!(":{i}"),
        BytesFrame::BulkString(b) => format!("${}", String::from_utf8_lossy(b)),
        BytesFrame::Array(items) => format!("array of {}", items.len()),
        BytesFrame::Null => "null".to_owned(),
    };
    text.chars().take(MAX_RENDER).collect()
}

fn unexpected(cmd: &Cmd, frame: &BytesFrame) -> RedisError {
    RedisError::UnexpectedReply {
        command: cmd.describe(),
        reply: render(frame),
    }
}

/// Expects `+OK`.
pub fn ok(cmd: &Cmd, frame: BytesFrame) -> Result<(), RedisError> {
    match &frame {
        BytesFrame::SimpleString(s) if s.as_ref() == b"OK" => Ok(()),
        _ => Err(unexpected(cmd, &frame)),
    }
}

/// Expects an integer reply.
pub fn int(cmd: &Cmd, frame: BytesFrame) -> Result<i64, RedisError> {
    match frame {
        BytesFrame::Integer(i) => Ok(i),
        other => Err(unexpected(cmd, &other)),
    }
}

/// Expects a non-negative integer reply.
pub fn count(cmd: &Cmd, frame: BytesFrame) -> Result<u64, RedisError> {
    match frame {
        BytesFrame::Integer(i) if i >= 0 => Ok(i.unsigned_abs()),
        other => Err(unexpected(cmd, &other)),
    }
}

/// Expects a bulk or simple string holding UTF-8 text (CLUSTER NODES, INFO, ...).
pub fn text(cmd: &Cmd, frame: BytesFrame) -> Result<String, RedisError> {
    match frame {
        BytesFrame::BulkString(b) | BytesFrame::SimpleString(b) => {
            match String::from_utf8(b.to_vec()) {
                Ok(s) => Ok(s),
                Err(_) => Err(RedisError::UnexpectedReply {
                    command: cmd.describe(),
                    reply: "non-UTF-8 text".to_owned(),
                }),
            }
        }
        other => Err(unexpected(cmd, &other)),
    }
}

/// Expects a bulk string (binary-safe), or null.
pub fn opt_bytes(cmd: &Cmd, frame: BytesFrame) -> Result<Option<Bytes>, RedisError> {
    match frame {
        BytesFrame::BulkString(b) => Ok(Some(b)),
        BytesFrame::Null => Ok(None),
        other => Err(unexpected(cmd, &other)),
    }
}

/// Expects an array of bulk strings (GETKEYSINSLOT, KEYS, ...).
pub fn bytes_array(cmd: &Cmd, frame: BytesFrame) -> Result<Vec<Bytes>, RedisError> {
    match frame {
        BytesFrame::Array(items) => items
            .into_iter()
            .map(|item| match item {
                BytesFrame::BulkString(b) | BytesFrame::SimpleString(b) => Ok(b),
                other => Err(unexpected(cmd, &other)),
            })
            .collect(),
        other => Err(unexpected(cmd, &other)),
    }
}

/// Expects an array (of anything).
pub fn array(cmd: &Cmd, frame: BytesFrame) -> Result<Vec<BytesFrame>, RedisError> {
    match frame {
        BytesFrame::Array(items) => Ok(items),
        other => Err(unexpected(cmd, &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_types_are_errors() {
        let cmd = Cmd::ping();
        assert!(ok(&cmd, BytesFrame::Integer(1)).is_err());
        assert!(count(&cmd, BytesFrame::Integer(-1)).is_err());
        assert!(
            text(
                &cmd,
                BytesFrame::BulkString(Bytes::from_static(&[0xff, 0xfe]))
            )
            .is_err()
        );
        assert!(bytes_array(&cmd, BytesFrame::Array(vec![BytesFrame::Integer(1)])).is_err());
        assert_eq!(
            render(&BytesFrame::BulkString(Bytes::from(vec![b'a'; 1000]))).len(),
            200
        );
    }
}
