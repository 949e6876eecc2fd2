//! What a script's `definition` column holds: the built-in interviewer's prompts
//! (`{"prompts":[...]}`) or an external agent (`{"agent":{"url","audio_format"}}`). Routes
//! validate it on the way in; the session service turns it into the media plane's specs.

use crate::media_port::{CodecSpec, PromptSpec};
use earshot_vocab::AgentAudioFormat;
use serde::{Deserialize, Serialize};

/// A script's stored definition.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ScriptDefinition {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<PromptSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentDefinition>,
    /// Encoder settings of the AI audio, over the deployment's `[opus]`.
    #[serde(default, skip_serializing_if = "CodecSpec::is_default")]
    pub codec: CodecSpec,
}

/// An external agent as a script defines it (see [`crate::media_port::AgentSpec`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentDefinition {
    pub url: String,
    #[serde(default)]
    pub audio_format: AgentAudioFormat,
}
