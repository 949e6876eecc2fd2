//! Who speaks, which recording, in which format and quality, and the agent's audio encoding.

use std::fmt;
use std::str::FromStr;

/// A name that is not one of an enum's spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {name:?} (expected one of: {expected})")]
pub struct UnknownName {
    pub what: &'static str,
    pub name: String,
    pub expected: &'static str,
}

/// Defines a fieldless enum with one spelling per variant: `as_str`, `ALL`, `Display`,
/// `FromStr` (exact spelling) and serde as that spelling.
macro_rules! spelled {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The one spelling of this value (API, database, files, logs).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName {
                        what: $what,
                        name: s.chars().take(64).collect(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownName;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use spelled;

spelled!(
    /// Who spoke a turn or a transcript line.
    Role, "role", { Ai = "ai", Participant = "participant" }
);

spelled!(
    /// A session's recordings: the two tracks and their mix.
    Track, "track", { Participant = "participant", Ai = "ai", Mix = "mix" }
);

spelled!(
    /// A recording's file format.
    Format, "format", { Wav = "wav", Mp3 = "mp3" }
);

spelled!(
    /// Recording quality, chosen per script.
    #[derive(Default)]
    Quality, "quality", {
        /// MP3 64 kbps at 24 kHz, WAV 16-bit.
        #[default]
        Standard = "standard",
        /// MP3 96 kbps at 24 kHz, WAV 16-bit.
        High = "high",
        /// MP3 192 kbps at 48 kHz, WAV 24-bit.
        Ultra = "ultra",
    }
);

impl Quality {
    pub const fn mp3_bitrate_kbps(self) -> u32 {
        match self {
            // 64 kbps at least: a 24 kHz frame must hold the LAME tag (its encoder delay and
            // padding, for gapless decoding), which a 48 kbps frame (144 bytes) cannot.
            Self::Standard => 64,
            Self::High => 96,
            Self::Ultra => 192,
        }
    }

    /// The MP3's sample rate. Speech needs no more than a 12 kHz band, so the listening copies
    /// of `standard` and `high` are made at 24 kHz: half the samples for LAME to code (its
    /// cost per second of audio falls by about half). `ultra` keeps the recording's 48 kHz;
    /// the WAVs of every preset stay at 48 kHz.
    pub const fn mp3_sample_rate(self) -> u32 {
        match self {
            Self::Standard | Self::High => 24_000,
            Self::Ultra => 48_000,
        }
    }

    pub const fn wav_bits(self) -> u16 {
        match self {
            Self::Standard | Self::High => 16,
            Self::Ultra => 24,
        }
    }
}

impl Track {
    /// The file name of this track in `format`, e.g. `mix.mp3`.
    pub fn file_name(self, format: Format) -> String {
        format!("{self}.{format}")
    }

    /// `participant.wav` -> (participant, wav); anything else is `None`.
    pub fn parse_file_name(name: &str) -> Option<(Track, Format)> {
        let (track, format) = name.split_once('.')?;
        Some((track.parse().ok()?, format.parse().ok()?))
    }
}

spelled!(
    /// Audio format spoken with an external agent, both ways.
    #[derive(Default)]
    AgentAudioFormat, "agent audio format", {
        /// 16-bit signed little-endian PCM at 16 kHz (`audio/x-l16`), 320 samples per 20 ms.
        #[default]
        L16k16 = "l16/16000",
        /// G.711 μ-law at 8 kHz (`audio/x-mulaw`), 160 bytes per 20 ms: Twilio's format.
        Mulaw8k = "mulaw/8000",
    }
);

impl AgentAudioFormat {
    /// The `mediaFormat.encoding` sent in `start`.
    pub const fn encoding(self) -> &'static str {
        match self {
            Self::L16k16 => "audio/x-l16",
            Self::Mulaw8k => "audio/x-mulaw",
        }
    }

    pub const fn sample_rate(self) -> u32 {
        match self {
            Self::L16k16 => 16_000,
            Self::Mulaw8k => 8_000,
        }
    }

    /// Bytes of payload per sample.
    pub const fn bytes_per_sample(self) -> usize {
        match self {
            Self::L16k16 => 2,
            Self::Mulaw8k => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips_through_its_spelling_and_serde() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(*r));
            let json = serde_json::to_string(r).expect("serialize");
            assert_eq!(json, format!("\"{r}\""));
            assert_eq!(
                serde_json::from_str::<Role>(&json).expect("deserialize"),
                *r
            );
        }
        for q in Quality::ALL {
            assert_eq!(q.as_str().parse::<Quality>(), Ok(*q));
        }
        for f in AgentAudioFormat::ALL {
            assert_eq!(f.as_str().parse::<AgentAudioFormat>(), Ok(*f));
        }
        assert_eq!(
            Track::parse_file_name("mix.mp3"),
            Some((Track::Mix, Format::Mp3))
        );
        assert_eq!(Track::Ai.file_name(Format::Wav), "ai.wav");
    }

    #[test]
    fn unknown_names_are_refused_with_the_expected_spellings() {
        let e = "loud".parse::<Quality>().expect_err("unknown");
        assert_eq!(e.what, "quality");
        assert!(e.to_string().contains("standard high ultra"), "{e}");
        assert!(serde_json::from_str::<Role>("\"bot\"").is_err());
        assert!("High".parse::<Quality>().is_err(), "one spelling only");
        for bad in ["mix", "mix.", ".wav", "mix.ogg", "../ai.wav", "ai.wav.part"] {
            assert_eq!(Track::parse_file_name(bad), None, "{bad}");
        }
    }
}
