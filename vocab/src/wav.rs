//! The two length fields of a WAV file that a crash leaves stale: hound rewrites the RIFF and
//! `data` sizes only when it flushes, so a file cut by a crash (on the local disk, or as the
//! segments that reached an object store) holds more samples than its header counts. Both
//! places where such a file is read back repair the header with [`repair_header`].

/// A WAV's data chunk as its header describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataChunk {
    /// Offset of the first sample byte (just after the `data` chunk's own header).
    pub start: u64,
    /// The data length the header states.
    pub declared: u64,
    /// Bytes per sample frame (`fmt `'s block align).
    pub block_align: u64,
}

/// Finds the data chunk in `head`, the file's first bytes (up to and including the `data`
/// chunk's header; 4 KiB is plenty for what hound writes). `None`: not a RIFF/WAVE, no
/// `fmt ` before `data`, or the data chunk's header is not within `head`.
pub fn find_data_chunk(head: &[u8]) -> Option<DataChunk> {
    if head.len() < 12 || &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return None;
    }
    let mut pos = 12usize;
    let mut block_align = 0u64;
    while pos + 8 <= head.len() {
        let id = &head[pos..pos + 4];
        let size = u32::from_le_bytes(head[pos + 4..pos + 8].try_into().ok()?);
        if id == b"fmt " {
            let fmt = head.get(pos + 8..pos + 8 + 16)?;
            block_align = u64::from(u16::from_le_bytes([fmt[12], fmt[13]]));
        } else if id == b"data" {
            return (block_align > 0).then_some(DataChunk {
                start: pos as u64 + 8,
                declared: u64::from(size),
                block_align,
            });
        }
        pos = pos.checked_add(8 + size as usize + (size as usize & 1))?;
    }
    None
}

/// Makes `head` (as for [`find_data_chunk`]) count exactly the whole sample frames of a file
/// of `file_len` bytes; returns the length the repaired file has (a partly written last frame
/// cut off), or `None` when the header already counts them (or cannot: not a WAV, or more
/// than 4 GiB). A header may undercount (flushed before the last samples) or, read back from
/// uploaded pieces, overcount (rewritten after the piece's length was taken). Only a data
/// chunk that ends the file is repaired (hound writes it last).
pub fn repair_header(head: &mut [u8], file_len: u64) -> Option<u64> {
    let chunk = find_data_chunk(head)?;
    if chunk.start > file_len {
        return None;
    }
    let on_disk = (file_len - chunk.start) / chunk.block_align * chunk.block_align;
    if on_disk == chunk.declared || on_disk > u64::from(u32::MAX) - 64 {
        return None;
    }
    let size_at = chunk.start as usize - 4;
    head[size_at..size_at + 4].copy_from_slice(&(on_disk as u32).to_le_bytes());
    let riff_size = chunk.start + on_disk - 8;
    head[4..8].copy_from_slice(&(riff_size as u32).to_le_bytes());
    Some(chunk.start + on_disk)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16-bit mono header stating `data_len` bytes of samples.
    fn header(data_len: u32) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&(36 + data_len).to_le_bytes());
        h.extend_from_slice(b"WAVEfmt ");
        h.extend_from_slice(&16u32.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&48_000u32.to_le_bytes());
        h.extend_from_slice(&96_000u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&16u16.to_le_bytes());
        h.extend_from_slice(b"data");
        h.extend_from_slice(&data_len.to_le_bytes());
        h
    }

    #[test]
    fn a_stale_header_is_made_to_count_every_whole_frame() {
        let mut h = header(100);
        assert_eq!(
            find_data_chunk(&h),
            Some(DataChunk {
                start: 44,
                declared: 100,
                block_align: 2
            })
        );
        // 44 + 1001 bytes on disk: 500 whole frames, the odd byte cut.
        assert_eq!(repair_header(&mut h, 44 + 1001), Some(44 + 1000));
        assert_eq!(h, header(1000));
        // Already right: nothing to do.
        assert_eq!(repair_header(&mut h, 44 + 1000), None);
        // Counting more than there is: cut down to what is there.
        assert_eq!(repair_header(&mut h, 44 + 600), Some(44 + 600));
        assert_eq!(h, header(600));
        assert_eq!(repair_header(&mut b"RIFX....WAVE".to_vec(), 100), None);
        assert_eq!(find_data_chunk(&h[..40]), None);
    }
}
