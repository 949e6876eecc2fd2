//! The state every route shares: the session service and the settings routes need to answer
//! (admin token, public URL, ICE servers, defaults).

use super::limits::Limits;
use crate::prompt_dirs::PromptDirs;
use crate::service::SessionService;
use serde::Serialize;
use std::sync::Arc;

/// An ICE server handed to browsers (F11). Empty list unless the operator configures one.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct IceServerView {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Shared state of every route.
pub struct App {
    pub service: Arc<SessionService>,
    /// The bootstrap superuser's token (accepted while `access.admin_token_enabled`).
    pub admin_token: String,
    /// Users, roles, API keys, console sign-ins and the audit log.
    pub access: Arc<crate::access::Access>,
    /// Base URL for links we hand out, e.g. `http://127.0.0.1:8080`.
    pub public_url: String,
    pub ice_servers: Vec<IceServerView>,
    /// TURN servers whose credentials are minted per session (after `ice_servers`).
    pub turn: Option<crate::turn_credentials::TurnMinter>,
    /// Store the participant's IP address (off unless enabled in config).
    pub record_ip: bool,
    pub default_campaign_id: String,
    pub default_script_id: String,
    /// Where scripts' prompt audio may come from.
    pub prompt_dirs: PromptDirs,
    /// Limits under abuse: rate limits, monitor slots, body size, timeouts, connections.
    pub limits: Limits,
    /// This node's id, drain switch and the media nodes it has heard.
    pub cluster: Arc<crate::cluster::Cluster>,
    /// With several media nodes: hands participants' WHIP requests to the node that holds
    /// their session (`None`: one process, everything is served here).
    pub handoff: Option<super::handoff::Handoff>,
}

pub type AppState = Arc<App>;
