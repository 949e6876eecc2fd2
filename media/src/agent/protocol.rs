//! The bridge's JSON messages. Outgoing ones follow Twilio Media Streams exactly (string
//! `sequenceNumber`, `chunk` and `timestamp`, as Twilio sends them); incoming ones are parsed
//! tolerantly: unknown events are reported as [`AgentMessage::Other`], extra fields (such as
//! `streamSid`) are ignored, and nothing panics on bad input.

use earshot_vocab::{AgentAudioFormat, Role};
use serde::{Deserialize, Serialize};

/// `accountSid` sent in `start` and `stop`.
pub const ACCOUNT_SID: &str = "earshot";

/// Builds the messages of one stream (one WebSocket connection): numbers every message after
/// `connected` with a `sequenceNumber`, and every `media` with a `chunk`.
#[derive(Debug)]
pub struct StreamMessages {
    stream_sid: String,
    call_sid: String,
    sequence: u64,
    chunk: u64,
}

#[derive(Serialize)]
struct Connected {
    event: &'static str,
    protocol: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Start<'a> {
    event: &'static str,
    sequence_number: String,
    start: StartBody<'a>,
    stream_sid: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StartBody<'a> {
    stream_sid: &'a str,
    account_sid: &'static str,
    call_sid: &'a str,
    tracks: [&'static str; 1],
    custom_parameters: &'a serde_json::Value,
    media_format: MediaFormat,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MediaFormat {
    encoding: &'static str,
    sample_rate: u32,
    channels: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Media<'a> {
    event: &'static str,
    sequence_number: String,
    media: MediaBody<'a>,
    stream_sid: &'a str,
}

#[derive(Serialize)]
struct MediaBody<'a> {
    track: &'static str,
    chunk: String,
    timestamp: String,
    payload: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Mark<'a> {
    event: &'static str,
    sequence_number: String,
    stream_sid: &'a str,
    mark: MarkBody<'a>,
}

#[derive(Serialize)]
struct MarkBody<'a> {
    name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Stop<'a> {
    event: &'static str,
    sequence_number: String,
    stream_sid: &'a str,
    stop: StopBody<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StopBody<'a> {
    account_sid: &'static str,
    call_sid: &'a str,
}

fn to_json<T: Serialize>(v: &T) -> String {
    // Serializing these plain structs cannot fail (string keys, no maps with other keys).
    serde_json::to_string(v).unwrap_or_default()
}

impl StreamMessages {
    pub fn new(stream_sid: impl Into<String>, call_sid: impl Into<String>) -> Self {
        Self {
            stream_sid: stream_sid.into(),
            call_sid: call_sid.into(),
            sequence: 0,
            chunk: 0,
        }
    }

    pub fn stream_sid(&self) -> &str {
        &self.stream_sid
    }

    fn next_sequence(&mut self) -> String {
        self.sequence += 1;
        self.sequence.to_string()
    }

    /// `{"event":"connected","protocol":"Call","version":"1.0.0"}`
    pub fn connected(&self) -> String {
        to_json(&Connected {
            event: "connected",
            protocol: "Call",
            version: "1.0.0",
        })
    }

    /// `start` with the media format and the custom parameters (`{}` when null).
    pub fn start(
        &mut self,
        format: AgentAudioFormat,
        custom_parameters: &serde_json::Value,
    ) -> String {
        let empty = serde_json::Value::Object(serde_json::Map::new());
        let custom = if custom_parameters.is_null() {
            &empty
        } else {
            custom_parameters
        };
        let sequence_number = self.next_sequence();
        to_json(&Start {
            event: "start",
            sequence_number,
            start: StartBody {
                stream_sid: &self.stream_sid,
                account_sid: ACCOUNT_SID,
                call_sid: &self.call_sid,
                tracks: ["inbound"],
                custom_parameters: custom,
                media_format: MediaFormat {
                    encoding: format.encoding(),
                    sample_rate: format.sample_rate(),
                    channels: 1,
                },
            },
            stream_sid: &self.stream_sid,
        })
    }

    /// One `media` message: `timestamp_ms` since the stream's start, base64 `payload`.
    pub fn media(&mut self, timestamp_ms: u64, payload: &str) -> String {
        let sequence_number = self.next_sequence();
        self.chunk += 1;
        to_json(&Media {
            event: "media",
            sequence_number,
            media: MediaBody {
                track: "inbound",
                chunk: self.chunk.to_string(),
                timestamp: timestamp_ms.to_string(),
                payload,
            },
            stream_sid: &self.stream_sid,
        })
    }

    /// A `mark` echoed back to the agent.
    pub fn mark(&mut self, name: &str) -> String {
        let sequence_number = self.next_sequence();
        to_json(&Mark {
            event: "mark",
            sequence_number,
            stream_sid: &self.stream_sid,
            mark: MarkBody { name },
        })
    }

    /// `stop` (pause or end of the session).
    pub fn stop(&mut self) -> String {
        let sequence_number = self.next_sequence();
        to_json(&Stop {
            event: "stop",
            sequence_number,
            stream_sid: &self.stream_sid,
            stop: StopBody {
                account_sid: ACCOUNT_SID,
                call_sid: &self.call_sid,
            },
        })
    }
}

/// A transcript line from the agent. Times in ms: on the stream's clock (the `timestamp` of the
/// media sent to the agent) as parsed, on the session timeline once the bridge has placed them.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptLine {
    pub role: Role,
    pub text: String,
    pub is_final: bool,
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
}

/// A message from the agent.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentMessage {
    /// AI audio, base64 in the stream's format.
    Media { payload: String },
    /// Echo `name` once the audio queued before it has been played.
    Mark { name: String },
    /// Drop all queued AI audio now (barge-in).
    Clear,
    /// A transcript line (times on the stream's clock).
    Transcript(TranscriptLine),
    /// The interview is over (after the queued audio).
    End,
    /// A well-formed message with another `event` (for example Twilio's `connected` or `start`
    /// echoed back, or a newer extension): ignored.
    Other { event: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("not a JSON message with an \"event\": {0}")]
    Malformed(String),
    #[error("invalid {event:?} message: {detail}")]
    Invalid { event: String, detail: String },
}

#[derive(Deserialize)]
struct Envelope {
    event: String,
}

#[derive(Deserialize)]
struct MediaIn {
    media: MediaInBody,
}

#[derive(Deserialize)]
struct MediaInBody {
    payload: String,
}

#[derive(Deserialize)]
struct MarkIn {
    mark: MarkInBody,
}

#[derive(Deserialize)]
struct MarkInBody {
    name: String,
}

#[derive(Deserialize)]
struct TranscriptIn {
    role: Role,
    text: String,
    #[serde(rename = "final", default = "yes")]
    is_final: bool,
    #[serde(default)]
    start_ms: Option<f64>,
    #[serde(default)]
    end_ms: Option<f64>,
}

fn yes() -> bool {
    true
}

/// Milliseconds given as any non-negative JSON number (Python agents send floats).
fn ms(v: Option<f64>) -> Option<u64> {
    v.filter(|x| x.is_finite() && *x >= 0.0 && *x < 1e15)
        .map(|x| x.round() as u64)
}

/// Parses one text message from the agent.
pub fn parse(text: &str) -> Result<AgentMessage, ProtocolError> {
    let env: Envelope =
        serde_json::from_str(text).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    let invalid = |e: serde_json::Error| ProtocolError::Invalid {
        event: env.event.clone(),
        detail: e.to_string(),
    };
    Ok(match env.event.as_str() {
        "media" => {
            let m: MediaIn = serde_json::from_str(text).map_err(invalid)?;
            AgentMessage::Media {
                payload: m.media.payload,
            }
        }
        "mark" => {
            let m: MarkIn = serde_json::from_str(text).map_err(invalid)?;
            AgentMessage::Mark { name: m.mark.name }
        }
        "clear" => AgentMessage::Clear,
        "transcript" => {
            let t: TranscriptIn = serde_json::from_str(text).map_err(invalid)?;
            AgentMessage::Transcript(TranscriptLine {
                role: t.role,
                text: t.text,
                is_final: t.is_final,
                start_ms: ms(t.start_ms),
                end_ms: ms(t.end_ms),
            })
        }
        "end" => AgentMessage::End,
        _ => AgentMessage::Other { event: env.event },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn outgoing_messages_have_twilio_shapes() {
        let mut m = StreamMessages::new("MZ1", "sess-1");
        let v: Value = serde_json::from_str(&m.connected()).unwrap();
        assert_eq!(
            v,
            json!({"event":"connected","protocol":"Call","version":"1.0.0"})
        );
        let v: Value =
            serde_json::from_str(&m.start(AgentAudioFormat::Mulaw8k, &json!({"a":"b"}))).unwrap();
        assert_eq!(
            v,
            json!({"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{
                "streamSid":"MZ1","accountSid":"earshot","callSid":"sess-1","tracks":["inbound"],
                "customParameters":{"a":"b"},
                "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}})
        );
        let v: Value = serde_json::from_str(&m.media(20, "AAA=")).unwrap();
        assert_eq!(
            v,
            json!({"event":"media","sequenceNumber":"2","streamSid":"MZ1",
                "media":{"track":"inbound","chunk":"1","timestamp":"20","payload":"AAA="}})
        );
        let v: Value = serde_json::from_str(&m.mark("a \"q\"")).unwrap();
        assert_eq!(
            v,
            json!({"event":"mark","sequenceNumber":"3","streamSid":"MZ1","mark":{"name":"a \"q\""}})
        );
        let v: Value = serde_json::from_str(&m.stop()).unwrap();
        assert_eq!(
            v,
            json!({"event":"stop","sequenceNumber":"4","streamSid":"MZ1",
                "stop":{"accountSid":"earshot","callSid":"sess-1"}})
        );
        let v: Value = serde_json::from_str(
            &StreamMessages::new("x", "y").start(AgentAudioFormat::L16k16, &Value::Null),
        )
        .unwrap();
        assert_eq!(v["start"]["customParameters"], json!({}));
        assert_eq!(v["start"]["mediaFormat"]["encoding"], "audio/x-l16");
        assert_eq!(v["start"]["mediaFormat"]["sampleRate"], 16000);
    }

    #[test]
    fn incoming_messages_parse_tolerantly() {
        assert_eq!(
            parse(r#"{"event":"media","streamSid":"MZ","media":{"payload":"AQI="}}"#).unwrap(),
            AgentMessage::Media {
                payload: "AQI=".into()
            }
        );
        assert_eq!(
            parse(r#"{"event":"mark","streamSid":"MZ","mark":{"name":"m1"}}"#).unwrap(),
            AgentMessage::Mark { name: "m1".into() }
        );
        assert_eq!(
            parse(r#"{"event":"clear","streamSid":"MZ"}"#).unwrap(),
            AgentMessage::Clear
        );
        assert_eq!(parse(r#"{"event":"end"}"#).unwrap(), AgentMessage::End);
        assert_eq!(
            parse(r#"{"event":"transcript","role":"participant","text":"hi","final":false,"start_ms":10,"end_ms":20.6}"#).unwrap(),
            AgentMessage::Transcript(TranscriptLine {
                role: Role::Participant,
                text: "hi".into(),
                is_final: false,
                start_ms: Some(10),
                end_ms: Some(21)
            })
        );
        assert_eq!(
            parse(r#"{"event":"transcript","role":"ai","text":"q","start_ms":-5}"#).unwrap(),
            AgentMessage::Transcript(TranscriptLine {
                role: Role::Ai,
                text: "q".into(),
                is_final: true,
                start_ms: None,
                end_ms: None
            })
        );
        assert_eq!(
            parse(r#"{"event":"dtmf","dtmf":{}}"#).unwrap(),
            AgentMessage::Other {
                event: "dtmf".into()
            }
        );
        for bad in [
            "",
            "nope",
            "[]",
            r#"{"no":"event"}"#,
            r#"{"event":5}"#,
            r#"{"event":"media"}"#,
            r#"{"event":"media","media":{"payload":7}}"#,
            r#"{"event":"mark","mark":{}}"#,
            r#"{"event":"transcript","role":"robot","text":"x"}"#,
            r#"{"event":"transcript","role":"ai"}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
