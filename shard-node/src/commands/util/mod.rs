//! Helpers several command families share: glob matching (`MATCH`, `KEYS`), the SCAN family's
//! cursors and options, random picks (`SRANDMEMBER`, `HRANDFIELD`, …) and argument helpers.

pub mod args;
pub mod glob;
pub mod random;
pub mod scan;
