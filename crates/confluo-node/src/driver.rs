//! Async driver (tokio): runs a [`Node`](crate::Node) over a transport and a storage.
