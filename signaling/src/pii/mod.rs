//! Personal data in transcript text (F10, issue 16): what is detected ([`detect`]), what a
//! campaign does with it ([`policy`]: keep, mask with `[EMAIL]`-style placeholders, or
//! redact), and where originals go when they are kept ([`vault`]).
//!
//! Detection is pure and works on one transcript line at a time; the service applies the
//! campaign's policy to final lines as they are stored and streamed, and the retention sweep
//! applies a delayed policy to stored turns.

pub mod detect;
pub mod policy;
mod spoken;
pub mod vault;

pub use detect::{Detector, Finding, PiiKind};
pub use policy::{CustomPattern, PiiAction, PiiPolicy, PolicyError};
pub use vault::{KeyRingVault, RefuseVault, TextVault};
