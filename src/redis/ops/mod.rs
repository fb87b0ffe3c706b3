//! Cluster operations. Each checks its preconditions against a fresh observation, acts, and
//! verifies the effect; each can be repeated after a crash half-way and picks up from the state
//! the nodes report.
