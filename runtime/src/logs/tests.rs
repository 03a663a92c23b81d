use std::fs;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;

fn log_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("container.log")
}

fn texts(entries: &[LogEntry]) -> Vec<(Stream, String)> {
    entries.iter().map(|e| (e.stream, e.log.clone())).collect()
}

fn out(text: &str) -> (Stream, String) {
    (Stream::Stdout, text.to_owned())
}

#[test]
fn lines_are_split_at_newlines_per_stream() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir);
    let mut writer = LogWriter::open(&path, 0).unwrap();
    writer.write(Stream::Stdout, b"hello\nwor").unwrap();
    writer.write(Stream::Stderr, b"oops\n").unwrap();
    writer.write(Stream::Stdout, b"ld\n\nlast").unwrap();
    assert_eq!(
        texts(&read(&path, None).unwrap()),
        [
            out("hello\n"),
            (Stream::Stderr, "oops\n".into()),
            out("world\n"),
            out("\n"),
        ],
        "the unfinished `last` waits for its newline"
    );
    writer.flush().unwrap();
    writer.flush().unwrap();
    let entries = read(&path, None).unwrap();
    assert_eq!(entries.last().unwrap().log, "last");
    assert!(entries.last().unwrap().is_partial());
    assert_eq!(entries.len(), 5, "a second flush writes nothing");
}

#[test]
fn records_are_docker_json_file_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir);
    let mut writer = LogWriter::open(&path, 0).unwrap();
    writer.write(Stream::Stderr, b"say \"hi\"\t\\\n").unwrap();
    let text = fs::read_to_string(&path).unwrap();
    let prefix = r#"{"log":"say \"hi\"\t\\\n","stream":"stderr","time":""#;
    assert!(text.starts_with(prefix), "{text}");
    let time = &text[prefix.len()..text.len() - 3];
    assert_eq!(&text[text.len() - 3..], "\"}\n");
    assert_eq!(time.len(), "2026-11-23T10:00:00.123456789Z".len(), "{time}");
    assert!(time.starts_with("20") && time.ends_with('Z'), "{time}");
    assert_eq!(read(&path, None).unwrap()[0].time, time);
}

#[test]
fn long_lines_become_partial_records_of_16_kib() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir);
    let mut writer = LogWriter::open(&path, 0).unwrap();
    let line = vec![b'x'; 40_000];
    for chunk in line.chunks(3000) {
        writer.write(Stream::Stdout, chunk).unwrap();
    }
    writer.write(Stream::Stdout, b"\n").unwrap();
    let entries = read(&path, None).unwrap();
    let sizes: Vec<usize> = entries.iter().map(|e| e.log.len()).collect();
    assert_eq!(sizes, [MAX_LINE, MAX_LINE, 40_000 - 2 * MAX_LINE + 1]);
    assert!(entries[0].is_partial() && entries[1].is_partial());
    assert!(!entries[2].is_partial());
    let joined: String = entries.iter().map(|e| e.log.as_str()).collect();
    assert_eq!(joined.len(), 40_001);
}

#[test]
fn a_cut_never_splits_a_character() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir);
    let mut writer = LogWriter::open(&path, 0).unwrap();
    // 'é' is two bytes: the 16 KiB boundary falls inside one of them.
    let line = format!("a{}\n", "é".repeat(MAX_LINE));
    writer.write(Stream::Stdout, line.as_bytes()).unwrap();
    let entries = read(&path, None).unwrap();
    assert_eq!(entries[0].log.len(), MAX_LINE - 1);
    let joined: String = entries.iter().map(|e| e.log.as_str()).collect();
    assert_eq!(joined, line, "no U+FFFD from a split character");
}

#[test]
fn output_that_is_not_utf8_is_kept_lossily() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir);
    let mut writer = LogWriter::open(&path, 0).unwrap();
    writer.write(Stream::Stdout, b"\xff\xfeok\n").unwrap();
    writer.write(Stream::Stdout, b"\xc3").unwrap();
    writer.flush().unwrap();
    let entries = read(&path, None).unwrap();
    assert_eq!(
        texts(&entries),
        [out("\u{fffd}\u{fffd}ok\n"), out("\u{fffd}")]
    );
}

#[test]
fn foreign_bytes_and_torn_lines_in_the_file_do_not_stop_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir);
    let mut file = b"{\"log\":\"a\xff\\n\",\"stream\":\"stdout\",\"time\":\"t\"}\n".to_vec();
    file.extend_from_slice(b"not json\n\n");
    file.extend_from_slice(b"{\"log\":\"b\\n\",\"stream\":\"stderr\",\"time\":\"t\"}\n");
    file.extend_from_slice(b"{\"log\":\"torn");
    fs::write(&path, file).unwrap();
    assert_eq!(
        texts(&read(&path, None).unwrap()),
        [out("a\u{fffd}\n"), (Stream::Stderr, "b\n".into())]
    );
}

#[test]
fn missing_log_reads_empty() {
    let dir = tempfile::tempdir().unwrap();
    assert!(read(&log_in(&dir), None).unwrap().is_empty());
}

#[test]
fn reopening_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir);
    LogWriter::open(&path, 0)
        .unwrap()
        .write(Stream::Stdout, b"one\n")
        .unwrap();
    LogWriter::open(&path, 0)
        .unwrap()
        .write(Stream::Stdout, b"two\n")
        .unwrap();
    assert_eq!(
        texts(&read(&path, None).unwrap()),
        [out("one\n"), out("two\n")]
    );
}

/// `line 000\n` … `line NNN\n` written one call each.
fn write_numbered(writer: &mut LogWriter, range: std::ops::Range<usize>) {
    for i in range {
        writer
            .write(Stream::Stdout, format!("line {i:03}\n").as_bytes())
            .unwrap();
    }
}

fn numbers(entries: &[LogEntry]) -> Vec<usize> {
    entries
        .iter()
        .map(|e| e.log.trim_end()["line ".len()..].parse().unwrap())
        .collect()
}

#[test]
fn rotation_keeps_one_old_file_and_the_latest_output() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir);
    let max = 1000;
    let mut writer = LogWriter::open(&path, max).unwrap();
    write_numbered(&mut writer, 0..100);
    let old = rotated_path(&path);
    assert!(old.exists());
    for file in [&path, &old] {
        let size = fs::metadata(file).unwrap().len();
        assert!(size <= max, "{} holds {size} bytes", file.display());
    }
    let kept = numbers(&read(&path, None).unwrap());
    assert_eq!(*kept.last().unwrap(), 99, "the latest line is kept");
    let first = kept[0];
    assert!(first > 0, "older lines were dropped");
    assert_eq!(kept, (first..100).collect::<Vec<_>>(), "in order, no gap");
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        2,
        "only the log and one old file"
    );
}

#[test]
fn a_record_larger_than_the_cap_is_still_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir);
    let mut writer = LogWriter::open(&path, 100).unwrap();
    writer.write(Stream::Stdout, b"small\n").unwrap();
    let big = format!("{}\n", "b".repeat(500));
    writer.write(Stream::Stdout, big.as_bytes()).unwrap();
    assert_eq!(
        texts(&read(&path, None).unwrap()),
        [out("small\n"), out(&big)]
    );
    assert_eq!(
        texts(&read(&rotated_path(&path), None).unwrap()),
        [out("small\n")]
    );
}

#[test]
fn tail_takes_the_last_records_across_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir);
    let mut writer = LogWriter::open(&path, 300).unwrap();
    write_numbered(&mut writer, 0..8);
    let both = numbers(&read(&path, None).unwrap());
    let in_current = numbers(&read(&path, None).unwrap()).len()
        - numbers(&read(&rotated_path(&path), None).unwrap()).len();
    assert!(in_current < 5, "the test needs the tail to span both files");
    assert_eq!(numbers(&read(&path, Some(5)).unwrap()), [3, 4, 5, 6, 7]);
    assert!(read(&path, Some(0)).unwrap().is_empty());
    assert_eq!(numbers(&read(&path, Some(1000)).unwrap()), both);
}

#[test]
fn follow_passes_on_tail_then_new_records_across_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir);
    let mut writer = LogWriter::open(&path, 300).unwrap();
    write_numbered(&mut writer, 0..4);
    // keep_going drives the writer, one step per call: each step rotates at most once,
    // so the follower sees every file.
    let mut step = 0;
    let mut seen = Vec::new();
    follow(
        &path,
        Some(2),
        || {
            step += 1;
            match step {
                1..=20 => {
                    write_numbered(&mut writer, 4 + (step - 1) * 3..4 + step * 3);
                    true
                }
                21 => {
                    writer.write(Stream::Stderr, b"bye").unwrap();
                    writer.flush().unwrap();
                    false
                }
                _ => false,
            }
        },
        |entry| {
            seen.push(entry.clone());
            Ok(())
        },
    )
    .unwrap();
    let last = seen.pop().unwrap();
    assert_eq!((last.stream, last.log.as_str()), (Stream::Stderr, "bye"));
    assert_eq!(numbers(&seen), (2..64).collect::<Vec<_>>());
    assert!(rotated_path(&path).exists(), "the log rotated meanwhile");
}

#[test]
fn follow_waits_for_a_log_that_does_not_exist_yet() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir);
    let mut writer = None;
    let mut calls = 0;
    let mut seen = Vec::new();
    follow(
        &path,
        None,
        || {
            calls += 1;
            if calls == 2 {
                let mut new = LogWriter::open(&path, 0).unwrap();
                new.write(Stream::Stdout, b"late\n").unwrap();
                writer = Some(new);
            }
            calls < 3
        },
        |entry| {
            seen.push(entry.clone());
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(texts(&seen), [out("late\n")]);
}

#[test]
fn follow_sees_everything_a_concurrent_writer_wrote_before_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir);
    let mut writer = LogWriter::open(&path, 0).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let thread = {
        let done = done.clone();
        std::thread::spawn(move || {
            write_numbered(&mut writer, 0..500);
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut seen = Vec::new();
    follow(
        &path,
        Some(0),
        || !done.load(Ordering::SeqCst),
        |entry| {
            seen.push(entry.clone());
            Ok(())
        },
    )
    .unwrap();
    thread.join().unwrap();
    // tail 0 skipped what was there when following began; the rest came in order.
    let seen = numbers(&seen);
    let first = seen.first().copied().unwrap_or(500);
    assert_eq!(seen, (first..500).collect::<Vec<_>>());
}

#[test]
fn follow_stops_when_the_consumer_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir);
    let mut writer = LogWriter::open(&path, 0).unwrap();
    write_numbered(&mut writer, 0..3);
    let error = follow(
        &path,
        None,
        || true,
        |_| Err(io::Error::from(io::ErrorKind::BrokenPipe)),
    )
    .unwrap_err();
    assert!(matches!(error, LogError::Output(ref e) if e.kind() == io::ErrorKind::BrokenPipe));
}
