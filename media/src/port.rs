//! The media engine as signaling's [`MediaPlane`]: the port's commands mapped onto the
//! engine's operations. The engine's events already are the port's [`MediaEvent`]s, so nothing
//! is translated on the way out.

use earshot_vocab::media_port::{
    AgentSpec, IceCredentials, MediaError, MediaPlane, OpenParticipant, RecordingFile,
    RecordingSpec,
};
use earshot_vocab::{Format, Track};

use crate::codec::OpusSettings;
use crate::engine::{AgentRequest, Engine, EngineError, ParticipantRequest, RecordingRequest};

impl From<EngineError> for MediaError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::InvalidSdp(m) => MediaError::InvalidSdp(m),
            EngineError::NoAudio => MediaError::NoAudio,
            EngineError::InvalidCandidate(m) => MediaError::InvalidCandidate(m),
            EngineError::UnknownSession => MediaError::UnknownSession,
            other => MediaError::Internal(other.to_string()),
        }
    }
}

impl Engine {
    fn agent_request(&self, a: AgentSpec) -> AgentRequest {
        AgentRequest {
            url: a.url,
            audio_format: a.audio_format,
            custom_parameters: a.custom_parameters,
            retry_for: self.config().agent_retry,
            tls: self.config().agent_tls,
        }
    }

    fn recording_request(&self, r: RecordingSpec) -> RecordingRequest {
        RecordingRequest {
            dir: r.dir,
            quality: r.quality,
            derive_at_end: self.config().derive_at_end,
            sealing: self.config().sealing,
        }
    }
}

/// The deployment's encoder settings with a script's overrides.
fn with_codec(base: OpusSettings, c: earshot_vocab::media_port::CodecSpec) -> OpusSettings {
    OpusSettings {
        bitrate_bps: c.bitrate.unwrap_or(base.bitrate_bps),
        complexity: c.complexity.unwrap_or(base.complexity),
        fec: c.fec.unwrap_or(base.fec),
        dtx: c.dtx.unwrap_or(base.dtx),
        expected_loss_pct: c.expected_loss_pct.unwrap_or(base.expected_loss_pct),
        wideband: c.wideband.unwrap_or(base.wideband),
    }
}

#[async_trait::async_trait]
impl MediaPlane for Engine {
    async fn open_participant(&self, req: OpenParticipant) -> Result<String, MediaError> {
        let agent = req.interview.agent.map(|a| self.agent_request(a));
        let opus = (!req.interview.codec.is_default())
            .then(|| with_codec(self.config().opus, req.interview.codec));
        let noise_suppression = req.recording.noise_suppression;
        let recording = req
            .recording
            .enabled
            .then(|| self.recording_request(req.recording));
        let request = ParticipantRequest {
            session_id: req.session_id,
            offer_sdp: req.offer_sdp,
            prompts: req.interview.prompts,
            silence_ms: req.interview.silence_ms,
            start_at: req.interview.start_at,
            noise_suppression,
            recording,
            agent,
            opus,
        };
        Ok(Engine::open_participant(self, request).await?)
    }

    async fn add_candidate(&self, session_id: &str, candidate: &str) -> Result<(), MediaError> {
        Ok(Engine::add_candidate(self, session_id, candidate).await?)
    }

    async fn hang_up(&self, session_id: &str) {
        Engine::hang_up(self, session_id).await;
    }

    async fn pause(&self, session_id: &str) {
        Engine::pause(self, session_id).await;
    }

    async fn resume(&self, session_id: &str, agent: Option<AgentSpec>) {
        let agent = agent.map(|a| self.agent_request(a));
        Engine::resume(self, session_id, agent).await;
    }

    async fn discard(&self, session_id: &str) {
        Engine::discard(self, session_id).await;
    }

    async fn finish(&self, session_id: &str, recording: Option<RecordingSpec>) {
        let orphan = recording.map(|r| self.recording_request(r));
        Engine::finish(self, session_id, orphan).await;
    }

    async fn derive_recording(
        &self,
        recording: RecordingSpec,
        track: Track,
        format: Format,
    ) -> Result<RecordingFile, MediaError> {
        let req = self.recording_request(recording);
        Ok(Engine::derive_recording(self, req, track, format).await?)
    }

    async fn restart_ice(
        &self,
        session_id: &str,
        client: IceCredentials,
    ) -> Result<Option<IceCredentials>, MediaError> {
        let ours = Engine::restart_ice(self, session_id, &client.ufrag, &client.pwd).await?;
        // The fragment's candidates belong to the new credentials (or, with the current ones,
        // are plain trickle).
        for candidate in &client.candidates {
            Engine::add_candidate(self, session_id, candidate).await?;
        }
        Ok(ours.map(|ours| IceCredentials {
            ufrag: ours.ufrag,
            pwd: ours.pwd,
            candidates: ours.candidates,
        }))
    }

    async fn open_listener(
        &self,
        session_id: &str,
        offer_sdp: &str,
    ) -> Result<(u64, String), MediaError> {
        Ok(Engine::open_listener(self, session_id, offer_sdp).await?)
    }

    async fn add_listener_candidate(
        &self,
        session_id: &str,
        listener_id: u64,
        candidate: &str,
    ) -> Result<(), MediaError> {
        Ok(Engine::add_listener_candidate(self, session_id, listener_id, candidate).await?)
    }

    async fn close_listener(&self, session_id: &str, listener_id: u64) {
        Engine::close_listener(self, session_id, listener_id).await;
    }

    fn metrics_text(&self) -> String {
        let mut out = String::new();
        self.metrics().render(&mut out);
        out
    }
}
