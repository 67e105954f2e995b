//! Byte streams between nodes and clients: plain TCP or TLS behind one type ([`stream`]), and
//! the TLS settings, certificates and their reloading ([`tls`]). Nothing here knows commands,
//! replication or the server's state.

pub mod stream;
pub mod tls;
