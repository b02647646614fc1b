use super::*;
use proptest::prelude::*;

fn ok<T>(r: Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn json_corpus(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"id":{i},"user":"user-{}","event":"{}","amount":{}.{:02},"tags":["a","b{}"]}}"#,
                i * 7919 % 1000,
                ["click", "view", "buy", "share"][i % 4],
                i * 31 % 977,
                i % 100,
                i % 13
            )
            .into_bytes()
        })
        .collect()
}

#[test]
fn level_range_is_checked() {
    assert!(check_level(3).is_ok());
    assert!(check_level(23).is_err());
    let msg = check_level(99)
        .map(|_| ())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.contains("level=99"), "{msg}");
}

#[test]
fn bomb_guard_refuses_declared_size() {
    let big = vec![0u8; 4 << 20];
    let codec = ok(Codec::plain(3));
    let frame = ok(codec.compress(&big));
    let err = codec.decompress(&frame, 1 << 20).err();
    assert!(matches!(err, Some(Error::OutputTooLarge { .. })), "{err:?}");
}

#[test]
fn streaming_frame_without_size_under_cap() {
    // A frame with no content size in its header: made by the streaming encoder.
    let data = b"hello streaming world ".repeat(5000);
    let mut enc =
        ok(zstd::stream::Encoder::new(Vec::new(), 3)
            .map_err(|e| Error::Compression(e.to_string())));
    std::io::Write::write_all(&mut enc, &data).unwrap_or_else(|e| panic!("{e}"));
    let frame = ok(enc.finish().map_err(|e| Error::Compression(e.to_string())));
    assert_eq!(
        ok(zstd_safe::get_frame_content_size(&frame).map_err(|_| Error::Compression("x".into()))),
        None
    );
    let codec = ok(Codec::plain(3));
    assert_eq!(ok(codec.decompress(&frame, data.len())), data);
    let err = codec.decompress(&frame, data.len() - 1).err();
    assert!(matches!(err, Some(Error::OutputTooLarge { .. })), "{err:?}");
    // truncated streaming frame
    let err = codec
        .decompress(&frame[..frame.len() / 2], usize::MAX)
        .err();
    assert!(
        matches!(err, Some(Error::Decompression(ref m)) if m.contains("truncated")),
        "{err:?}"
    );
}

#[test]
fn truncated_and_corrupt_are_explained() {
    let codec = ok(Codec::plain(3));
    let frame = ok(codec.compress(&b"abc".repeat(1000)));
    for cut in [1, 3, 5, frame.len() - 1] {
        let e = codec.decompress(&frame[..cut], usize::MAX).err();
        assert!(
            matches!(e, Some(Error::Decompression(_))),
            "cut {cut}: {e:?}"
        );
    }
    let e = codec.decompress(b"definitely not zstd", usize::MAX).err();
    assert!(
        matches!(e, Some(Error::Decompression(ref m)) if m.contains("magic")),
        "{e:?}"
    );
    let e = codec.decompress(b"", usize::MAX).err();
    assert!(
        matches!(e, Some(Error::Decompression(ref m)) if m.contains("empty")),
        "{e:?}"
    );
}

#[test]
fn dictionary_helps_small_messages() {
    let corpus = json_corpus(2000);
    let refs: Vec<&[u8]> = corpus.iter().map(Vec::as_slice).collect();
    let dict = ok(train_dictionary(&refs, 16 * 1024));
    let with = ok(Compressor::new(3, 0, Some(&dict), DEFAULT_MAX_OUTPUT_SIZE));
    let without = ok(Compressor::new(3, 0, None, DEFAULT_MAX_OUTPUT_SIZE));
    let (mut a, mut b) = (0, 0);
    let mut out = Vec::new();
    for m in &refs[..200] {
        ok(with.pack_into(m, &mut out));
        a += out.len();
        assert_eq!(&ok(with.unpack(&out)), m);
        ok(without.pack_into(m, &mut out));
        b += out.len();
    }
    assert!(a < b, "dictionary {a} vs none {b}");
    // A blob packed with the dictionary cannot be read without it.
    ok(with.pack_into(refs[0], &mut out));
    assert!(without.unpack(&out).is_err());
}

#[test]
fn compress_many_parallel_matches_serial() {
    let corpus: Vec<Vec<u8>> = json_corpus(3000).into_iter().map(|m| m.repeat(8)).collect();
    let refs: Vec<&[u8]> = corpus.iter().map(Vec::as_slice).collect();
    let codec = ok(Codec::new(3, None));
    let serial = ok(codec.compress_many(&refs, 1));
    let parallel = ok(codec.compress_many(&refs, 4));
    assert_eq!(serial, parallel);
    let frames: Vec<&[u8]> = parallel.iter().map(Vec::as_slice).collect();
    assert_eq!(ok(codec.decompress_many(&frames, usize::MAX, 4)), corpus);
}

#[test]
fn split_covers_everything_in_order() {
    let data: Vec<Vec<u8>> = (0..37).map(|i| vec![0u8; i * 13 % 50]).collect();
    let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    let total = refs.iter().map(|s| s.len()).sum();
    for parts in 1..6 {
        let chunks = split_by_bytes(&refs, total, parts);
        assert!(chunks.len() <= parts);
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), refs.len());
    }
}

proptest! {
    #[test]
    fn round_trip_any_bytes_any_level(data in proptest::collection::vec(any::<u8>(), 0..4096), level in -5i32..=19) {
        let codec = ok(Codec::plain(level));
        let frame = ok(codec.compress(&data));
        prop_assert_eq!(ok(codec.decompress(&frame, data.len().max(1))), data);
    }

    #[test]
    fn pack_round_trip(data in proptest::collection::vec(any::<u8>(), 0..2048), threshold in 0usize..512, level in 1i32..=9) {
        let c = ok(Compressor::new(level, threshold, None, DEFAULT_MAX_OUTPUT_SIZE));
        let mut blob = Vec::new();
        ok(c.pack_into(&data, &mut blob));
        prop_assert!(blob.len() <= data.len() + 1);
        prop_assert_eq!(ok(c.unpack(&blob)), data);
    }

    #[test]
    fn decompress_never_panics(blob in proptest::collection::vec(any::<u8>(), 0..256)) {
        let codec = ok(Codec::plain(3));
        let _ = codec.decompress(&blob, 1 << 20);
        let c = ok(Compressor::new(3, 0, None, 1 << 20));
        let _ = c.unpack(&blob);
    }

    #[test]
    fn corrupted_frames_never_panic(data in proptest::collection::vec(any::<u8>(), 1..512), flip in any::<usize>(), bit in 0u8..8) {
        let codec = ok(Codec::plain(3));
        let mut frame = ok(codec.compress(&data));
        let i = flip % frame.len();
        frame[i] ^= 1 << bit;
        let _ = codec.decompress(&frame, 1 << 20);
    }
}

#[test]
fn constants_match_the_linked_zstd() {
    assert_eq!(
        level_range(),
        (zstd_safe::min_c_level(), zstd_safe::max_c_level())
    );
    for n in [
        0usize,
        1,
        10,
        255,
        256,
        1000,
        4096,
        65535,
        131071,
        131072,
        131073,
        1 << 24,
    ] {
        assert_eq!(compress_bound(n), zstd_safe::compress_bound(n), "n={n}");
    }
}

#[test]
fn compress_with_gives_the_same_frame() {
    let codec = ok(Codec::plain(3));
    for data in [&b""[..], b"0123456789", &b"abc".repeat(500)] {
        let expected = ok(codec.compress(data));
        assert_eq!(ok(codec.compress_with(data, <[u8]>::to_vec)), expected);
    }
}

#[test]
fn dictionary_size_is_checked_before_allocating() {
    let samples = json_corpus(64);
    let refs: Vec<&[u8]> = samples.iter().map(Vec::as_slice).collect();
    for size in [0, 255, MAX_DICTIONARY_SIZE + 1, 1 << 62, usize::MAX] {
        match train_dictionary(&refs, size) {
            Err(Error::InvalidParameter { param: "size", .. }) => {}
            other => panic!("size={size}: {:?}", other.map(|d| d.len())),
        }
    }
}

/// A frame header declaring `size` content bytes with one empty last block.
fn frame_declaring(size: u64) -> Vec<u8> {
    let mut f = vec![0x28, 0xb5, 0x2f, 0xfd, 0xe0];
    f.extend_from_slice(&size.to_le_bytes());
    f.extend_from_slice(&[1, 0, 0]);
    f
}

#[test]
fn a_declared_size_the_input_cannot_hold_is_refused() {
    let claim = frame_declaring(1 << 40);
    let err = Codec::declared_size(&claim, usize::MAX)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("more than 16 input bytes can hold"), "{err}");
    // What the frames can hold is still accepted (an empty frame declaring 0).
    assert_eq!(ok(Codec::declared_size(&frame_declaring(0), 10)), Some(0));
    let codec = ok(Codec::plain(3));
    assert!(codec.decompress(&claim, usize::MAX).is_err());
}
