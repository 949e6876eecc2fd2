//! The loss the participant's side reports for the AI audio it receives (the report blocks of
//! its RTCP reports, looked at every 2 s). The session core steers the encoder's in-band FEC by
//! it: FEC bits cost quality on a clean path, so they are spent only where packets are lost.

use crate::peer::{ReportBlock, ServerPeer};

/// Ticks (20 ms) between two looks: 2 s, about two reports of a browser.
const TICKS_PER_LOOK: u32 = 100;

#[derive(Default)]
pub(super) struct LossProbe {
    ticks: u32,
    last: Option<ReportBlock>,
}

impl LossProbe {
    /// Called on every tick: every 2 s, the share (0-1) of the packets the receiver expected
    /// since the previous look that it reports lost, when a new report came.
    pub(super) fn tick(&mut self, peer: Option<&ServerPeer>) -> Option<f64> {
        self.ticks += 1;
        if self.ticks < TICKS_PER_LOOK {
            return None;
        }
        self.ticks = 0;
        let now = peer?.receiver_report()?;
        let before = self.last.replace(now);
        loss_between(before, now)
    }
}

/// Loss between two report blocks from the cumulative counters (steadier than one report's
/// own `fraction lost`, which covers only the last report interval); `None` without news.
fn loss_between(before: Option<ReportBlock>, now: ReportBlock) -> Option<f64> {
    let Some(before) = before else {
        return Some(f64::from(now.fraction_lost) / 256.0);
    };
    let expected = now.highest_sequence.wrapping_sub(before.highest_sequence);
    if expected == 0 || expected > 1 << 16 {
        // No new report, or a new stream (an ICE restart keeps it; a new peer starts over).
        return None;
    }
    let lost = now.cumulative_lost.saturating_sub(before.cumulative_lost);
    Some((f64::from(lost) / f64::from(expected)).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(fraction_lost: u8, cumulative_lost: u32, highest_sequence: u32) -> ReportBlock {
        ReportBlock {
            fraction_lost,
            cumulative_lost,
            highest_sequence,
        }
    }

    #[test]
    fn loss_is_counted_between_reports() {
        // First report: its own fraction (64/256).
        assert_eq!(loss_between(None, block(64, 5, 100)), Some(0.25));
        // 100 expected since, 10 more lost.
        assert_eq!(
            loss_between(Some(block(64, 5, 100)), block(0, 15, 200)),
            Some(0.1)
        );
        // The same report again: nothing new.
        assert_eq!(
            loss_between(Some(block(0, 15, 200)), block(0, 15, 200)),
            None
        );
        // Duplicates make the cumulative count go down: no loss, not a negative one.
        assert_eq!(
            loss_between(Some(block(0, 15, 200)), block(0, 12, 300)),
            Some(0.0)
        );
    }
}
