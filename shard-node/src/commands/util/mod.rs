//! Helpers several command families share: the SCAN family's cursors and options, random picks
//! (`SRANDMEMBER`, `HRANDFIELD`, …) and argument helpers. Glob matching is `crate::glob`.

pub mod args;
pub mod random;
pub mod scan;
