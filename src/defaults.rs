//! The built-in defaults that make `earshot serve` work with nothing else: the default
//! campaign and the default interviewer script, whose prompt audio is embedded in the binary
//! and written to the data directory on start.

use earshot_signaling::media_port::PromptSpec;
use std::path::Path;

pub const CAMPAIGN_ID: &str = "cmp_default";
pub const CAMPAIGN_NAME: &str = "Demo campaign";
pub const SCRIPT_ID: &str = "scr_default";
pub const SCRIPT_NAME: &str = "Built-in interviewer: three questions";

/// (id, text, audio bytes) of the default script's prompts, in order.
const PROMPTS: [(&str, &str, &[u8]); 5] = [
    (
        "greeting",
        "Hello, and thank you for joining this interview. I will ask you three short questions.",
        include_bytes!("../assets/interviewer/default/greeting.wav"),
    ),
    (
        "q1",
        "First question. What do you enjoy most about your work?",
        include_bytes!("../assets/interviewer/default/q1.wav"),
    ),
    (
        "q2",
        "Second question. Tell me about a challenge you solved recently.",
        include_bytes!("../assets/interviewer/default/q2.wav"),
    ),
    (
        "q3",
        "Third question. What would you like to learn next year?",
        include_bytes!("../assets/interviewer/default/q3.wav"),
    ),
    (
        "goodbye",
        "Thank you, that was the last question. Goodbye.",
        include_bytes!("../assets/interviewer/default/goodbye.wav"),
    ),
];

/// Writes the prompt files under `dir` (if missing or different) and returns their specs.
pub fn write_default_prompts(dir: &Path) -> std::io::Result<Vec<PromptSpec>> {
    std::fs::create_dir_all(dir)?;
    let mut specs = Vec::with_capacity(PROMPTS.len());
    for (id, text, bytes) in PROMPTS {
        let path = dir.join(format!("{id}.wav"));
        let same = std::fs::read(&path).is_ok_and(|existing| existing == bytes);
        if !same {
            std::fs::write(&path, bytes)?;
        }
        specs.push(PromptSpec {
            id: id.to_string(),
            text: text.to_string(),
            audio: path,
        });
    }
    Ok(specs)
}
