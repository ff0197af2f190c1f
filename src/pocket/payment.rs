//! Payment instructions for a standing order, with a scannable QR code.
