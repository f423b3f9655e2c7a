//! placeholder
pub mod raw;
