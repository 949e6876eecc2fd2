//! The service's two long-running tasks: the media plane's events in, and the lifecycle
//! ticker (every 500 ms, a round of [`SessionService::fire_due_timers`]); and one short one
//! at start, [`SessionService::backfill_summaries`].

use super::SessionService;
use crate::media_port::MediaEvent;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How often the ticker asks for due timers.
const TICK_EVERY: Duration = Duration::from_millis(500);

impl SessionService {
    /// Starts the background work: media events, lifecycle timers, and once the summaries
    /// of sessions stored before they existed.
    pub fn spawn(self: Arc<Self>, mut media_events: mpsc::Receiver<MediaEvent>) {
        let backfill = self.clone();
        tokio::spawn(async move {
            backfill.backfill_summaries().await;
        });
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(ev) = media_events.recv().await {
                me.handle_media_event(ev).await;
            }
        });
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK_EVERY);
            loop {
                tick.tick().await;
                self.fire_due_timers().await;
            }
        });
    }
}
