//! The media port across processes, end to end in one process: a [`RemoteMediaPlane`] sends
//! JSON-encoded commands through a transport that hands each to a node's [`serve_request`]
//! (the same bytes NATS would carry); each node's plane records the command it was given.

use super::remote::RemoteMediaPlane;
use super::*;
use crate::clock::ManualClock;
use crate::cluster::Cluster as Nodes;
use crate::lifecycle::Millis;
use crate::placement::NodeAnnouncement;
use earshot_vocab::media_port::{InterviewSpec, MediaPlane};
use earshot_vocab::{AgentAudioFormat, Quality};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A node's media plane: records each command (as the wire type) and answers from it.
#[derive(Default)]
struct NodePlane {
    name: String,
    commands: Mutex<Vec<MediaCommand>>,
    refuse_sdp: bool,
}

impl NodePlane {
    fn named(name: &str) -> Arc<NodePlane> {
        Arc::new(NodePlane {
            name: name.into(),
            ..Default::default()
        })
    }

    fn got(&self, c: MediaCommand) {
        self.commands.lock().unwrap().push(c);
    }

    fn ops(&self) -> Vec<String> {
        self.commands
            .lock()
            .unwrap()
            .iter()
            .map(|c| {
                serde_json::to_value(c).unwrap()["op"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl MediaPlane for NodePlane {
    async fn open_participant(&self, req: OpenParticipant) -> Result<String, MediaError> {
        self.got(MediaCommand::OpenParticipant(req.clone()));
        if self.refuse_sdp {
            return Err(MediaError::InvalidSdp("no m= line".into()));
        }
        Ok(format!("answer from {} for {}", self.name, req.session_id))
    }
    async fn add_candidate(&self, session_id: &str, candidate: &str) -> Result<(), MediaError> {
        self.got(MediaCommand::AddCandidate {
            session_id: session_id.into(),
            candidate: candidate.into(),
        });
        Ok(())
    }
    async fn hang_up(&self, session_id: &str) {
        self.got(MediaCommand::HangUp {
            session_id: session_id.into(),
        });
    }
    async fn pause(&self, session_id: &str) {
        self.got(MediaCommand::Pause {
            session_id: session_id.into(),
        });
    }
    async fn resume(&self, session_id: &str, agent: Option<AgentSpec>) {
        self.got(MediaCommand::Resume {
            session_id: session_id.into(),
            agent,
        });
    }
    async fn discard(&self, session_id: &str) {
        self.got(MediaCommand::Discard {
            session_id: session_id.into(),
        });
    }
    async fn finish(&self, session_id: &str, recording: Option<RecordingSpec>) {
        self.got(MediaCommand::Finish {
            session_id: session_id.into(),
            recording,
        });
    }
    async fn derive_recording(
        &self,
        recording: RecordingSpec,
        track: Track,
        format: Format,
    ) -> Result<RecordingFile, MediaError> {
        self.got(MediaCommand::DeriveRecording {
            recording: recording.clone(),
            track,
            format,
        });
        Ok(RecordingFile {
            track,
            format,
            path: recording.dir.join("mix.mp3"),
            duration_ms: 1234,
            bytes: 5678,
        })
    }
    async fn restart_ice(
        &self,
        session_id: &str,
        client: IceCredentials,
    ) -> Result<Option<IceCredentials>, MediaError> {
        self.got(MediaCommand::RestartIce {
            session_id: session_id.into(),
            client,
        });
        Ok(Some(IceCredentials {
            ufrag: "srv".into(),
            pwd: "server-password-22chars".into(),
            candidates: vec!["candidate:1 1 udp 1 127.0.0.1 4000 typ host".into()],
        }))
    }
    async fn open_listener(
        &self,
        session_id: &str,
        offer_sdp: &str,
    ) -> Result<(u64, String), MediaError> {
        self.got(MediaCommand::OpenListener {
            session_id: session_id.into(),
            offer_sdp: offer_sdp.into(),
        });
        Ok((7, format!("listener answer from {}", self.name)))
    }
    async fn add_listener_candidate(
        &self,
        session_id: &str,
        listener_id: u64,
        candidate: &str,
    ) -> Result<(), MediaError> {
        self.got(MediaCommand::AddListenerCandidate {
            session_id: session_id.into(),
            listener_id,
            candidate: candidate.into(),
        });
        Ok(())
    }
    async fn close_listener(&self, session_id: &str, listener_id: u64) {
        self.got(MediaCommand::CloseListener {
            session_id: session_id.into(),
            listener_id,
        });
    }
    fn metrics_text(&self) -> String {
        String::new()
    }
}

/// Hands each request's bytes to the named node's `serve_request`; nodes in `down` do not
/// answer.
#[derive(Default)]
struct Loopback {
    nodes: HashMap<String, Arc<NodePlane>>,
    down: Mutex<HashSet<String>>,
}

#[async_trait::async_trait]
impl RpcTransport for Loopback {
    async fn request(&self, node_id: &str, payload: Vec<u8>) -> Result<Vec<u8>, RpcError> {
        let unreachable = || RpcError::Unreachable {
            node: node_id.into(),
            detail: "no responders".into(),
        };
        if self.down.lock().unwrap().contains(node_id) {
            return Err(unreachable());
        }
        let plane = self.nodes.get(node_id).ok_or_else(unreachable)?;
        Ok(serve_request(plane.as_ref(), &payload).await)
    }
}

fn announcement(id: &str, sessions: u32, session_ids: &[&str]) -> NodeAnnouncement {
    NodeAnnouncement {
        node_id: id.into(),
        http_url: format!("http://{id}.internal:8080"),
        sessions,
        capacity: 50,
        cpu: 0.0,
        missed_deadlines: 0,
        draining: false,
        session_ids: session_ids.iter().map(|s| s.to_string()).collect(),
    }
}

struct Cluster {
    a: Arc<NodePlane>,
    b: Arc<NodePlane>,
    transport: Arc<Loopback>,
    nodes: Arc<Nodes>,
    clock: Arc<ManualClock>,
    remote: RemoteMediaPlane,
}

impl Cluster {
    /// Nodes a (10 sessions) and b (2 sessions), both heard at the start.
    fn new() -> Cluster {
        Self::with(NodePlane::named("a"), NodePlane::named("b"))
    }

    fn with(a: Arc<NodePlane>, b: Arc<NodePlane>) -> Cluster {
        let clock = Arc::new(ManualClock::starting_at(Millis(1_000_000)));
        let nodes = Arc::new(Nodes::new("api", clock.clone()));
        let mut planes = HashMap::new();
        planes.insert("a".to_string(), a.clone());
        planes.insert("b".to_string(), b.clone());
        let transport = Arc::new(Loopback {
            nodes: planes,
            down: Mutex::default(),
        });
        let remote = RemoteMediaPlane::new(transport.clone(), nodes.clone());
        let cluster = Cluster {
            a,
            b,
            transport,
            nodes,
            clock,
            remote,
        };
        cluster.hear(announcement("a", 10, &[]));
        cluster.hear(announcement("b", 2, &[]));
        cluster
    }

    fn hear(&self, a: NodeAnnouncement) {
        self.nodes.hear(a);
    }
}

fn recording() -> RecordingSpec {
    RecordingSpec {
        enabled: true,
        noise_suppression: true,
        quality: Quality::High,
        dir: PathBuf::from("/data/recordings/ses_1"),
    }
}

fn open(session_id: &str) -> OpenParticipant {
    OpenParticipant {
        session_id: session_id.into(),
        offer_sdp: "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n".into(),
        interview: InterviewSpec {
            prompts: Vec::new(),
            silence_ms: 1200,
            start_at: 2,
            agent: Some(AgentSpec {
                url: "ws://127.0.0.1:9/agent".into(),
                audio_format: AgentAudioFormat::default(),
                custom_parameters: serde_json::json!({"session": session_id, "resume": true}),
            }),
            codec: Default::default(),
        },
        recording: recording(),
    }
}

fn credentials() -> IceCredentials {
    IceCredentials {
        ufrag: "cli".into(),
        pwd: "client-password-22chars".into(),
        candidates: vec!["candidate:2 1 udp 2 10.0.0.2 5000 typ host".into()],
    }
}

#[test]
fn every_command_and_reply_survives_the_wire() {
    let commands = vec![
        MediaCommand::OpenParticipant(open("ses_1")),
        MediaCommand::AddCandidate {
            session_id: "ses_1".into(),
            candidate: "candidate:1 1 udp 1 1.2.3.4 9 typ host".into(),
        },
        MediaCommand::HangUp {
            session_id: "ses_1".into(),
        },
        MediaCommand::Pause {
            session_id: "ses_1".into(),
        },
        MediaCommand::Resume {
            session_id: "ses_1".into(),
            agent: open("ses_1").interview.agent,
        },
        MediaCommand::Discard {
            session_id: "ses_1".into(),
        },
        MediaCommand::Finish {
            session_id: "ses_1".into(),
            recording: Some(recording()),
        },
        MediaCommand::DeriveRecording {
            recording: recording(),
            track: Track::Mix,
            format: Format::Mp3,
        },
        MediaCommand::RestartIce {
            session_id: "ses_1".into(),
            client: credentials(),
        },
        MediaCommand::OpenListener {
            session_id: "ses_1".into(),
            offer_sdp: "v=0\r\n".into(),
        },
        MediaCommand::AddListenerCandidate {
            session_id: "ses_1".into(),
            listener_id: 3,
            candidate: "".into(),
        },
        MediaCommand::CloseListener {
            session_id: "ses_1".into(),
            listener_id: 3,
        },
    ];
    for c in commands {
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(
            serde_json::from_str::<MediaCommand>(&text).unwrap(),
            c,
            "{text}"
        );
    }
    let replies = vec![
        MediaReply::Done,
        MediaReply::Answer { sdp: "v=0".into() },
        MediaReply::Listener {
            id: 9,
            sdp: "v=0".into(),
        },
        MediaReply::Ice {
            credentials: Some(credentials()),
        },
        MediaReply::Ice { credentials: None },
        MediaReply::Error {
            error: WireError::NoAudio,
        },
        MediaReply::Error {
            error: WireError::InvalidCandidate("port".into()),
        },
    ];
    for r in replies {
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            serde_json::from_str::<MediaReply>(&text).unwrap(),
            r,
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_new_participant_goes_to_the_least_loaded_node_and_its_commands_follow() {
    let c = Cluster::new();
    let answer = c.remote.open_participant(open("ses_1")).await.unwrap();
    assert_eq!(answer, "answer from b for ses_1");
    assert_eq!(c.remote.holder("ses_1").as_deref(), Some("b"));
    // The offer arrived whole.
    assert_eq!(
        c.b.commands.lock().unwrap()[0],
        MediaCommand::OpenParticipant(open("ses_1"))
    );

    c.remote
        .add_candidate("ses_1", "candidate:9 1 udp 9 10.0.0.9 9 typ host")
        .await
        .unwrap();
    let ice = c
        .remote
        .restart_ice("ses_1", credentials())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ice.ufrag, "srv");
    let (id, sdp) = c.remote.open_listener("ses_1", "v=0\r\n").await.unwrap();
    assert_eq!((id, sdp.as_str()), (7, "listener answer from b"));
    c.remote
        .add_listener_candidate("ses_1", 7, "end-of-candidates")
        .await
        .unwrap();
    c.remote.close_listener("ses_1", 7).await;
    c.remote.pause("ses_1").await;
    c.remote.resume("ses_1", None).await;
    c.remote.hang_up("ses_1").await;
    c.remote.finish("ses_1", Some(recording())).await;

    assert_eq!(
        c.b.ops(),
        [
            "open_participant",
            "add_candidate",
            "restart_ice",
            "open_listener",
            "add_listener_candidate",
            "close_listener",
            "pause",
            "resume",
            "hang_up",
            "finish"
        ]
    );
    assert!(c.a.ops().is_empty(), "a got {:?}", c.a.ops());
    // Finished: the session's media is nowhere now.
    assert_eq!(c.remote.holder("ses_1"), None);
    assert!(matches!(
        c.remote.add_candidate("ses_1", "x").await,
        Err(MediaError::UnknownSession)
    ));
}

#[tokio::test]
async fn a_reconnect_returns_to_the_node_that_holds_the_session_while_it_lives() {
    let c = Cluster::new();
    c.remote.open_participant(open("ses_1")).await.unwrap();
    // b is now the busier node, but it holds ses_1: a new offer of ses_1 goes back there.
    c.hear(announcement("b", 40, &["ses_1"]));
    c.remote.open_participant(open("ses_1")).await.unwrap();
    assert_eq!(c.b.ops(), ["open_participant", "open_participant"]);
    // A new session goes to the now less loaded a.
    c.remote.open_participant(open("ses_2")).await.unwrap();
    assert_eq!(c.a.ops(), ["open_participant"]);
}

#[tokio::test]
async fn when_the_holding_node_is_lost_the_participant_lands_on_another() {
    let c = Cluster::new();
    c.remote.open_participant(open("ses_1")).await.unwrap();
    // b dies: a keeps announcing, b goes silent for more than three intervals.
    c.transport.down.lock().unwrap().insert("b".into());
    c.clock.advance(Duration::from_millis(2500));
    c.hear(announcement("a", 10, &[]));
    c.clock.advance(Duration::from_millis(600));
    assert_eq!(c.remote.holder("ses_1"), None);
    // Commands for the lost session fail as unknown, without waiting on the dead node.
    assert!(matches!(
        c.remote.restart_ice("ses_1", credentials()).await,
        Err(MediaError::UnknownSession)
    ));
    // The participant's new offer lands on a.
    let answer = c.remote.open_participant(open("ses_1")).await.unwrap();
    assert_eq!(answer, "answer from a for ses_1");
    assert_eq!(c.remote.holder("ses_1").as_deref(), Some("a"));
}

#[tokio::test]
async fn a_session_another_api_node_placed_is_found_by_the_announcements() {
    let c = Cluster::new();
    c.hear(announcement("a", 11, &["ses_other"]));
    c.remote.pause("ses_other").await;
    assert_eq!(c.a.ops(), ["pause"]);
    assert!(c.b.ops().is_empty());
}

#[tokio::test]
async fn errors_cross_as_themselves_and_a_silent_node_is_named() {
    let refusing = Arc::new(NodePlane {
        name: "b".into(),
        refuse_sdp: true,
        ..Default::default()
    });
    let c = Cluster::with(NodePlane::named("a"), refusing);
    let err = c.remote.open_participant(open("ses_1")).await.unwrap_err();
    assert!(
        matches!(&err, MediaError::InvalidSdp(d) if d == "no m= line"),
        "{err:?}"
    );
    // A refused offer places nothing.
    assert_eq!(c.remote.holder("ses_1"), None);

    // A node that does not answer: the error names it; nothing is remembered.
    c.transport.down.lock().unwrap().insert("b".into());
    let err = c.remote.open_participant(open("ses_2")).await.unwrap_err();
    assert!(
        matches!(&err, MediaError::Internal(d) if d.contains("media node b did not answer")),
        "{err:?}"
    );
    assert_eq!(c.remote.holder("ses_2"), None);
}

#[tokio::test]
async fn no_node_to_take_a_session_is_a_clear_error() {
    let c = Cluster::new();
    let mut full = announcement("a", 50, &[]);
    full.capacity = 50;
    let mut draining = announcement("b", 0, &[]);
    draining.draining = true;
    c.hear(full);
    c.hear(draining);
    let err = c.remote.open_participant(open("ses_1")).await.unwrap_err();
    assert!(
        matches!(&err, MediaError::Internal(d) if d.contains("no media node")),
        "{err:?}"
    );
    assert!(c.a.ops().is_empty() && c.b.ops().is_empty());
}

#[tokio::test]
async fn derived_files_are_made_by_a_node_that_takes_work() {
    let c = Cluster::new();
    let file = c
        .remote
        .derive_recording(recording(), Track::Mix, Format::Mp3)
        .await
        .unwrap();
    assert_eq!(file.path, PathBuf::from("/data/recordings/ses_1/mix.mp3"));
    assert_eq!((file.duration_ms, file.bytes), (1234, 5678));
    assert_eq!(c.b.ops(), ["derive_recording"]);
}

#[tokio::test]
async fn an_unreadable_request_is_answered_with_an_error_and_does_nothing() {
    let plane = NodePlane::named("a");
    let answer = serve_request(plane.as_ref(), b"{\"op\":\"launch_rockets\"}").await;
    let reply: MediaReply = serde_json::from_slice(&answer).unwrap();
    assert!(
        matches!(&reply, MediaReply::Error { error: WireError::Internal(d) } if d.contains("unreadable media command")),
        "{reply:?}"
    );
    let answer = serve_request(plane.as_ref(), b"\xff\x00").await;
    assert!(matches!(
        serde_json::from_slice::<MediaReply>(&answer).unwrap(),
        MediaReply::Error { .. }
    ));
    assert!(plane.ops().is_empty());
}

#[tokio::test]
async fn a_node_that_holds_media_itself_serves_its_own_sessions_in_process() {
    let c = Cluster::new();
    // This process is node b: its plane is called directly, and the transport is never used
    // for it. An offer that reached b is answered on b even when a is the less loaded now
    // (the hand-off already placed it here).
    c.hear(announcement("a", 0, &[]));
    let local = NodePlane::named("b-local");
    let remote =
        RemoteMediaPlane::new(c.transport.clone(), c.nodes.clone()).with_local("b", local.clone());
    c.transport.down.lock().unwrap().insert("b".into());
    let answer = remote.open_participant(open("ses_1")).await.unwrap();
    assert_eq!(answer, "answer from b-local for ses_1");
    remote.pause("ses_1").await;
    assert_eq!(local.ops(), ["open_participant", "pause"]);
    assert!(c.b.ops().is_empty());
    // Another node's session still goes over the transport.
    c.hear(announcement("a", 10, &["ses_a"]));
    remote.pause("ses_a").await;
    assert_eq!(c.a.ops(), ["pause"]);
}
