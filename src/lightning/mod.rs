//! The user's Lightning node: message signatures (proof of ownership of a node key), and (with
//! the Lightning issue) invoice sources and BOLT11 checks.
//!
//! Nothing here holds a node's private key; signing is asked of the node itself (tests and the
//! demo sign with throwaway keys).

pub mod signmessage;
