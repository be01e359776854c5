//! Pieces every role uses and that use nothing of rustlive above them: logging and the boot-log
//! sender, the one deadline, paths under an injectable root, exit codes and the one-line
//! report, bounded values from outside, calendar dates, and test support.

pub mod deadline;
pub mod exit;
pub mod log;
pub mod paths;
pub mod syslog;
#[doc(hidden)]
pub mod testing;
pub mod time;
pub mod values;
