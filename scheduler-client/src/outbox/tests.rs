use super::*;
use crate::protocol::JobSpec;

fn lease(id: &str) -> Lease {
    Lease {
        lease_id: id.into(),
        job_id: format!("job-{id}"),
        attempt: 1,
        fencing_token: 4,
        ttl_ms: 1000,
        job: JobSpec::default(),
    }
}

fn report(id: &str, state: JobState) -> Report {
    Report {
        idempotency_key: idempotency_key(id, 4, state),
        seq: 0,
        lease_id: id.into(),
        job_id: format!("job-{id}"),
        fencing_token: 4,
        state,
        at_ms: 1,
        container_id: (state == JobState::Running).then(|| "c1".to_owned()),
        exit: None,
        usage: None,
        outputs: None,
        earnings: None,
    }
}

#[test]
fn the_node_id_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let first = Outbox::open(dir.path()).unwrap().node_id().unwrap();
    assert!(first.starts_with("node-") && first.len() > 20, "{first}");
    let again = Outbox::open(dir.path()).unwrap().node_id().unwrap();
    assert_eq!(first, again);
}

#[test]
fn the_same_change_is_queued_once_and_seq_grows() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = Outbox::open(dir.path()).unwrap();
    outbox
        .insert_job(&lease("a"), report("a", JobState::Accepted))
        .unwrap();
    outbox.record(report("a", JobState::Running)).unwrap();
    outbox.record(report("a", JobState::Running)).unwrap();
    drop(outbox);
    let mut outbox = Outbox::open(dir.path()).unwrap();
    outbox.record(report("a", JobState::Running)).unwrap();
    let pending = outbox.pending(10).unwrap();
    let states: Vec<_> = pending.iter().map(|r| r.state).collect();
    assert_eq!(states, [JobState::Accepted, JobState::Running]);
    assert!(pending[0].seq < pending[1].seq);
    let jobs = outbox.jobs().unwrap();
    assert_eq!(jobs[0].phase, JobState::Running);
    assert_eq!(jobs[0].container_id.as_deref(), Some("c1"));
    assert!(outbox.has_report("a", 4, JobState::Running).unwrap());
    assert!(!outbox.has_report("a", 5, JobState::Running).unwrap());
}

#[test]
fn an_acknowledged_final_report_ends_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = Outbox::open(dir.path()).unwrap();
    outbox
        .insert_job(&lease("a"), report("a", JobState::Accepted))
        .unwrap();
    outbox.record(report("a", JobState::Exited)).unwrap();
    assert_eq!(outbox.queued().unwrap(), 2);
    outbox
        .ack(&[idempotency_key("a", 4, JobState::Accepted)])
        .unwrap();
    assert_eq!(outbox.queued().unwrap(), 1);
    assert_eq!(
        outbox.jobs().unwrap().len(),
        1,
        "not done before the final ack"
    );
    outbox
        .ack(&[idempotency_key("a", 4, JobState::Exited)])
        .unwrap();
    assert_eq!(outbox.queued().unwrap(), 0);
    assert!(outbox.jobs().unwrap().is_empty());
    // A change queued again after its ack is not sent again.
    outbox.record(report("a", JobState::Exited)).unwrap();
    assert_eq!(outbox.queued().unwrap(), 0);
}

#[test]
fn a_newer_schema_is_refused_with_a_next_step() {
    let dir = tempfile::tempdir().unwrap();
    drop(Outbox::open(dir.path()).unwrap());
    let conn = Connection::open(dir.path().join("worker/worker.db")).unwrap();
    conn.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(conn);
    match Outbox::open(dir.path()) {
        Err(e @ OutboxError::NewerSchema { found: 99, .. }) => {
            assert!(e.to_string().contains("newer"), "{e}")
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("opened a newer schema"),
    }
}

#[test]
fn log_cursors_persist_per_stream() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path()).unwrap();
    assert_eq!(
        outbox.log_cursor("a", LogStream::Stdout).unwrap(),
        LogCursor::default()
    );
    let cursor = LogCursor {
        next_seq: 3,
        offset: 99,
        eof: false,
    };
    outbox
        .set_log_cursor("a", LogStream::Stdout, cursor)
        .unwrap();
    drop(outbox);
    let outbox = Outbox::open(dir.path()).unwrap();
    assert_eq!(outbox.log_cursor("a", LogStream::Stdout).unwrap(), cursor);
    assert_eq!(
        outbox.log_cursor("a", LogStream::Stderr).unwrap(),
        LogCursor::default()
    );
}
