//! Where a session stands in its lifecycle: the one definition of the states, of which ones
//! have ended, and of their spellings (the database, the API, the metrics and the load
//! generator all read them from here).

use crate::audio::spelled;
use std::fmt;
use std::str::FromStr;

use crate::UnknownName;

spelled!(
    /// A session's lifecycle state.
    State, "session state", {
        /// Invite opened, consent page shown.
        Created = "created",
        InProgress = "in_progress",
        Paused = "paused",
        Completed = "completed",
        Abandoned = "abandoned",
        AdminEnded = "admin_ended",
        Restarted = "restarted",
    }
);

impl State {
    /// Completed, abandoned, admin_ended and restarted: the session has ended and accepts no
    /// events (an admin may still restart it, which issues a new session).
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            State::Completed | State::Abandoned | State::AdminEnded | State::Restarted
        )
    }

    /// The states in which a session has ended.
    pub fn terminal() -> impl Iterator<Item = State> {
        State::ALL.iter().copied().filter(|s| s.is_terminal())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_states_are_the_four_terminal_ones() {
        let ended: Vec<&str> = State::terminal().map(State::as_str).collect();
        assert_eq!(
            ended,
            ["completed", "abandoned", "admin_ended", "restarted"]
        );
        assert_eq!("in_progress".parse::<State>(), Ok(State::InProgress));
        assert!("done".parse::<State>().is_err());
    }
}
