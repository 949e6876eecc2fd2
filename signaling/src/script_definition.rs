//! What a script's `definition` column holds: the built-in interviewer's prompts
//! (`{"prompts":[...]}`) or an external agent (`{"agent":{"url","audio_format"}}`). Routes
//! validate it on the way in; the session service turns it into the media plane's specs.

use crate::media_port::PromptSpec;
use serde::{Deserialize, Serialize};

/// A script's stored definition.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ScriptDefinition {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<PromptSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentDefinition>,
}

/// An external agent as a script defines it (see [`crate::media_port::AgentSpec`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentDefinition {
    pub url: String,
    #[serde(default = "default_audio_format")]
    pub audio_format: String,
}

/// Audio formats an agent may speak; the first is the default.
pub const AUDIO_FORMATS: [&str; 2] = ["l16/16000", "mulaw/8000"];

fn default_audio_format() -> String {
    AUDIO_FORMATS[0].to_string()
}
