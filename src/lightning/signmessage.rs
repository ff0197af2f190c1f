//! LND / Core Lightning `signmessage` signatures: zbase32 of a 65-byte recoverable signature.
