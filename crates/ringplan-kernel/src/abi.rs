//! The io_uring ABI ringplan uses, and the Linux constants beside it.
