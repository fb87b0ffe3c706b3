//! Redis Cluster administration over RESP.
