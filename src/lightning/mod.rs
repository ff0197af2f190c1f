//! The user's Lightning node: invoices from it (LND, Core Lightning, or a Lightning address),
//! checked before use; message signatures (proof that a node key is the user's); and a pinned
//! TLS client for nodes with self-signed certificates.
//!
//! Nothing here holds a node's private key; signing is asked of the node itself (tests and the
//! demo sign with throwaway keys).

pub mod invoice;
pub mod node;
pub mod signmessage;
pub mod tls;
