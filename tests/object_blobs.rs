//! `ObjectStoreBlobs` (issue 17, item 2) against a real S3-compatible server (moto, see
//! `support::moto`): plain and sealed objects served whole and by range; a missing key; live
//! track files uploaded as segments by the spool and served, while only segments exist, as
//! the file they add up to (a plain WAV's header repaired, a sealed file decrypted); finished
//! files moved to whole objects with their segments and local folder gone; a session deleted.

mod support;

use bytes::Bytes;
use earshot_sealed::{Content, KeyRing, SealedWriter};
use earshot_signaling::blob_store::object::ObjectStoreBlobs;
use earshot_signaling::blob_store::{Blob, BlobKey, BlobStore};
use earshot_signaling::byte_range::ByteRange;
use futures_util::StreamExt;
use std::io::Write;
use std::sync::Arc;
use support::moto::Moto;

async fn read(blob: Blob) -> Vec<u8> {
    let chunks: Vec<Bytes> = blob.body.map(|c| c.expect("body")).collect().await;
    chunks.concat()
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_sealed_objects_stream_out_whole_and_by_range() {
    let moto = Moto::start("recordings").await;
    let ring = Arc::new(KeyRing::generate("k1").expect("ring"));
    let blobs = ObjectStoreBlobs::new(moto.client(), "rec/eu").with_keys(Some(ring.clone()));

    // A missing key is no blob, not an error.
    let ai = BlobKey::new("ses_one", "ai.wav").expect("key");
    assert!(blobs.open(&ai).await.expect("open").is_none());

    let plain = pattern(700_000);
    moto.put("rec/eu/ses_one/ai.wav", plain.clone()).await;
    let whole = blobs.open(&ai).await.expect("open").expect("blob");
    assert_eq!((whole.len, whole.range), (700_000, None));
    assert_eq!(read(whole).await, plain);
    let part = blobs
        .open_range(&ai, Some(ByteRange::From(300_001, Some(650_000))))
        .await
        .expect("open")
        .expect("blob");
    assert_eq!(part.range, Some((300_001, 650_000)));
    assert_eq!(read(part).await, plain[300_001..=650_000]);
    let tail = blobs
        .open_range(&ai, Some(ByteRange::Suffix(10)))
        .await
        .expect("open")
        .expect("blob");
    assert_eq!(read(tail).await, plain[699_990..]);
    let past = blobs
        .open_range(&ai, Some(ByteRange::From(700_000, None)))
        .await
        .expect("open")
        .expect("blob");
    assert!(past.unsatisfiable);

    // A sealed MP3 larger than one read-ahead: decrypted as it streams, ranges across chunks.
    let dir = tempfile::tempdir().expect("dir");
    let sealed_path = dir.path().join("mix.mp3");
    let mp3 = pattern(600_000);
    let mut w = SealedWriter::create(&sealed_path, &ring, Content::Bytes).expect("writer");
    for piece in mp3.chunks(70_000) {
        w.write_all(piece).expect("write");
        w.flush().expect("flush");
    }
    w.finish().expect("finish");
    let on_disk = std::fs::read(&sealed_path).expect("read");
    assert_ne!(on_disk[..1000], mp3[..1000]);
    moto.put("rec/eu/ses_one/mix.mp3", on_disk).await;
    let mix = BlobKey::new("ses_one", "mix.mp3").expect("key");
    let whole = blobs.open(&mix).await.expect("open").expect("blob");
    assert_eq!(whole.len, 600_000);
    assert_eq!(read(whole).await, mp3);
    for (a, b) in [(16_380, 16_400), (69_990, 400_010), (599_000, 599_999)] {
        let part = blobs
            .open_range(&mix, Some(ByteRange::From(a, Some(b))))
            .await
            .expect("open")
            .expect("blob");
        assert_eq!(part.range, Some((a, b)));
        assert_eq!(read(part).await, mp3[a as usize..=b as usize], "{a}-{b}");
    }
    // Without the key ring a sealed object is refused, never served as bytes.
    let keyless = ObjectStoreBlobs::new(moto.client(), "rec/eu");
    assert!(matches!(
        keyless.open(&mix).await,
        Err(earshot_signaling::blob_store::BlobError::Sealed(_))
    ));

    // Deleting the session deletes every object under it, and only those.
    moto.put("rec/eu/ses_two/ai.wav", b"RIFF".to_vec()).await;
    blobs.delete_session("ses_one").await.expect("delete");
    assert_eq!(moto.names("rec/eu").await, ["rec/eu/ses_two/ai.wav"]);
    blobs.delete_session("ses_one").await.expect("again");
    assert!(blobs.delete_session("../x").await.is_err());
}

/// 16-bit samples `from..from + n` of a recognisable ramp.
fn samples(from: usize, n: usize) -> Vec<i16> {
    (from..from + n)
        .map(|i| (i % 30_000) as i16 - 15_000)
        .collect()
}

fn wav_samples(bytes: &[u8]) -> Vec<i16> {
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes)).expect("a WAV");
    assert_eq!(reader.spec().sample_rate, 48_000);
    reader
        .into_samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tracks_go_up_as_segments_and_finished_files_whole() {
    let moto = Moto::start("recordings").await;
    let ring = Arc::new(KeyRing::generate("k1").expect("ring"));
    let spool = tempfile::tempdir().expect("spool");
    let blobs = ObjectStoreBlobs::new(moto.client(), "rec")
        .with_keys(Some(ring.clone()))
        .with_spool(spool.path().to_path_buf(), "Node-A");
    let attempt = blobs.attempt().expect("attempt").to_owned();
    assert!(attempt.ends_with("-node-a"), "{attempt}");
    let folder = spool.path().join("ses_live");
    std::fs::create_dir_all(&folder).expect("folder");

    // A plain participant track as the recorder writes it: its header rewritten at each
    // flush; the last samples are written after the last flush (a crash would cut here).
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(folder.join("participant.wav"), spec).expect("wav");
    for s in samples(0, 48_000) {
        wav.write_sample(s).expect("sample");
    }
    wav.flush().expect("flush");
    // A sealed AI track: its samples sealed a chunk per flush.
    let pcm = Content::Pcm {
        channels: 1,
        bits: 16,
        sample_rate: 48_000,
    };
    let mut ai = SealedWriter::create(&folder.join("ai.wav"), &ring, pcm).expect("sealed");
    let ai_bytes: Vec<u8> = samples(7, 96_000)
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    ai.write_all(&ai_bytes[..96_000]).expect("write");
    ai.flush().expect("flush");
    // Not a live track: never uploaded as segments.
    std::fs::write(folder.join("participant.peaks.json"), b"[0.5]").expect("peaks");

    assert_eq!(blobs.upload_segments().await.expect("round 1"), 2);
    for s in samples(48_000, 24_000) {
        wav.write_sample(s).expect("sample");
    }
    wav.flush().expect("flush");
    for s in samples(72_000, 10_001) {
        wav.write_sample(s).expect("sample");
    }
    // As after a kill -9 between flushes: the samples are in the file, the header still
    // counts 72,000 of them, and half a sample frame was written past them.
    wav.flush().expect("flush");
    std::mem::forget(wav);
    {
        use std::io::{Seek, SeekFrom};
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(folder.join("participant.wav"))
            .expect("open");
        f.seek(SeekFrom::Start(4)).expect("seek");
        f.write_all(&(36u32 + 144_000).to_le_bytes())
            .expect("riff size");
        f.seek(SeekFrom::Start(40)).expect("seek");
        f.write_all(&144_000u32.to_le_bytes()).expect("data size");
        f.seek(SeekFrom::End(0)).expect("seek");
        f.write_all(&[0x7f]).expect("half a frame");
    }
    ai.write_all(&ai_bytes[96_000..]).expect("write");
    ai.flush().expect("flush");
    assert_eq!(blobs.upload_segments().await.expect("round 2"), 2);
    assert_eq!(blobs.upload_segments().await.expect("round 3"), 0);
    let names = moto.names("rec/ses_live").await;
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.contains(&format!(".wav.seg/{attempt}/"))),
        "{names:?}"
    );

    // This node reads a live file from its spool, as on the local disk.
    let key = BlobKey::new("ses_live", "participant.wav").expect("key");
    let local = std::fs::read(folder.join("participant.wav")).expect("local");
    assert!(read(blobs.open(&key).await.expect("open").expect("blob")).await == local);

    // Only segments (as another node, or this one after losing its disk, sees them): the
    // plain WAV is their concatenation with its header counting every whole sample that went
    // up; the sealed one decrypts to the samples sealed.
    let blobs_elsewhere = ObjectStoreBlobs::new(moto.client(), "rec").with_keys(Some(ring.clone()));
    let blob = blobs_elsewhere
        .open(&key)
        .await
        .expect("open")
        .expect("blob");
    let body = read(blob).await;
    assert_eq!(body.len(), 44 + 2 * 82_001);
    assert!(
        wav_samples(&body) == samples(0, 82_001),
        "participant samples differ"
    );
    let part = blobs_elsewhere
        .open_range(&key, Some(ByteRange::From(40, Some(99))))
        .await
        .expect("open")
        .expect("blob");
    assert_eq!(read(part).await, body[40..100]);
    let ai_key = BlobKey::new("ses_live", "ai.wav").expect("key");
    let ai_body = read(
        blobs_elsewhere
            .open(&ai_key)
            .await
            .expect("open")
            .expect("blob"),
    )
    .await;
    assert!(
        wav_samples(&ai_body) == samples(7, 96_000),
        "ai samples differ"
    );

    // Final: each file goes up whole, the segments and the local folder go.
    ai.finish().expect("finish");
    let local_participant = std::fs::read(folder.join("participant.wav")).expect("local");
    // A segment of an earlier run of this session on another node (it died, the participant
    // came back here): the move must keep it, it holds audio these files do not have.
    let foreign = "rec/ses_live/participant.wav.seg/0000000000000-other-node/00000000000000000000";
    moto.put(foreign, b"RIFF from the first node".to_vec())
        .await;
    // Marked finished: moved by the upload task's next round (here called directly).
    blobs.session_finished("ses_live").await.expect("mark");
    assert!(folder.exists(), "only marked, not moved yet");
    assert_eq!(blobs.publish_finished().await, 1);
    assert_eq!(blobs.publish_finished().await, 0);
    assert_eq!(
        moto.names("rec").await,
        [
            "rec/ses_live/ai.wav",
            "rec/ses_live/participant.peaks.json",
            "rec/ses_live/participant.wav",
            foreign,
        ]
    );
    assert!(!folder.exists());
    let stored = moto.get("rec/ses_live/participant.wav").await;
    assert_eq!(stored, local_participant);
    let ai_body = read(blobs.open(&ai_key).await.expect("open").expect("blob")).await;
    assert!(
        wav_samples(&ai_body) == samples(7, 96_000),
        "ai samples differ"
    );
    let peaks = BlobKey::new("ses_live", "participant.peaks.json").expect("key");
    assert_eq!(
        read(blobs.open(&peaks).await.expect("open").expect("blob")).await,
        b"[0.5]"
    );
}
