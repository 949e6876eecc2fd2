//! Earshot's media plane: WebRTC peers, RTP, Opus, DSP and recording. It knows nothing of HTTP
//! or storage; [`engine::Engine`] is its front door (commands in, events out).

pub mod agent;
pub mod client;
pub mod codec;
pub mod denoise;
pub mod engine;
mod finalizer;
pub mod interviewer;
pub mod jitter;
pub mod level;
pub mod metrics;
pub mod peaks;
pub mod peer;
mod port;
pub mod prompt;
pub mod recorder;
pub mod request;
pub mod resample;
pub mod session;
pub mod track_file;
pub mod units;
pub mod vad;
