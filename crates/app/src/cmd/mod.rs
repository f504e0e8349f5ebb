//! One module per subcommand.

pub mod admin;
pub mod demo;
pub mod replay;
pub mod sandbox;
pub mod serve;
