//! The reception report blocks the other side sends about the audio this peer sends (RFC 3550
//! §6.4): how much of it arrives. A browser that also sends audio puts them in its sender
//! reports, which the WebRTC library's statistics do not read (they take receiver reports
//! only), so an interceptor of our own reads both on the way in and lets everything pass.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::sansio::Protocol;

/// What the receiving side's latest report block says of a stream this peer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// Share lost since the receiver's previous report, in 256ths (RFC 3550 `fraction lost`).
    pub fraction_lost: u8,
    /// Packets lost since the stream began.
    pub cumulative_lost: u32,
    /// Extended highest sequence number received.
    pub highest_sequence: u32,
}

/// The latest report block, shared between the interceptor (in the library's driver) and the
/// peer's owner.
#[derive(Debug, Default)]
pub(crate) struct ReportBlocks {
    latest: Mutex<Option<ReportBlock>>,
}

impl ReportBlocks {
    pub(crate) fn latest(&self) -> Option<ReportBlock> {
        self.latest.lock().ok().and_then(|l| *l)
    }

    fn note(&self, r: &ReceptionReport) {
        if let Ok(mut latest) = self.latest.lock() {
            *latest = Some(ReportBlock {
                fraction_lost: r.fraction_lost,
                cumulative_lost: r.total_lost,
                highest_sequence: r.last_sequence_number,
            });
        }
    }
}

/// Reads report blocks out of incoming sender and receiver reports; passes every packet on.
pub(crate) struct ReportBlockReader {
    blocks: Arc<ReportBlocks>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl ReportBlockReader {
    pub(crate) fn new(blocks: Arc<ReportBlocks>) -> Self {
        Self {
            blocks,
            read: VecDeque::new(),
            write: VecDeque::new(),
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for ReportBlockReader {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                let any = p.as_any();
                let blocks = if let Some(sr) = any.downcast_ref::<SenderReport>() {
                    &sr.reports
                } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                    &rr.reports
                } else {
                    continue;
                };
                for b in blocks {
                    self.blocks.note(b);
                }
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for ReportBlockReader {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
