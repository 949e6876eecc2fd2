//! Earshot's shared vocabulary: the words `media` and `signaling` both speak, each defined
//! once — who speaks ([`Role`]), which recording ([`Track`], [`Format`], [`Quality`]), how an
//! agent's audio is encoded ([`AgentAudioFormat`]), where a session stands ([`State`]) — and the
//! media port between the two crates ([`media_port`]: commands in, events out). Neither crate
//! depends on the other; both depend on this one. Every enum has one spelling on the wire
//! (`as_str`, `FromStr`, serde) so nothing inside the process passes them as strings.

mod audio;
pub mod media_port;
mod state;
pub mod wav;

pub use audio::{AgentAudioFormat, Format, Quality, Role, Track, UnknownName};
pub use state::State;
