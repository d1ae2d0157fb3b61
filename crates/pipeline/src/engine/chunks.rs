//! Long videos: a clip longer than the model's chunk is generated chunk by chunk, each continuing from the
//! previous chunk's last frame (Image2World on it).

use crate::conditioning::Mode;

/// Chunk lengths (pixel frames) for a clip of `frames`: the first chunk up to `chunk` frames, each later one
/// overlapping the previous by one frame; every length 1 + 4k.
pub fn long_video_chunks(frames: usize, chunk: usize) -> Vec<usize> {
    let mut out = vec![chunk.min(frames)];
    let mut have = out[0];
    while have < frames {
        let remaining = frames - have; // new frames still needed
        let len = (remaining + 1).min(chunk); // one overlapping frame
        let len = 1 + (len - 1) / 4 * 4;
        out.push(len);
        have += len - 1;
    }
    out
}

/// The mode of each of `chunks` chunks of a job in `mode`: later chunks continue from the previous chunk's last
/// frame.
pub fn chunk_modes(mode: Mode, chunks: usize) -> Vec<Mode> {
    (0..chunks)
        .map(|i| if i == 0 { mode } else { Mode::Image2World })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_clip_with_one_frame_overlap() {
        assert_eq!(long_video_chunks(93, 93), vec![93]);
        assert_eq!(long_video_chunks(181, 93), vec![93, 89]);
        assert_eq!(long_video_chunks(17, 9), vec![9, 9]);
        for (frames, chunk) in [(17, 9), (201, 93), (45, 13)] {
            let c = long_video_chunks(frames, chunk);
            assert_eq!(
                c[0] + c[1..].iter().map(|l| l - 1).sum::<usize>(),
                frames,
                "{frames}/{chunk}: {c:?}"
            );
        }
        assert_eq!(
            chunk_modes(Mode::Video2World, 3),
            [Mode::Video2World, Mode::Image2World, Mode::Image2World]
        );
    }
}
