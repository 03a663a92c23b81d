use super::*;

#[test]
fn ok_answers_round_trip_and_ignore_unknown_fields() {
    let answer = PollAnswer {
        leases: vec![Lease {
            lease_id: "l1".into(),
            job_id: "j1".into(),
            attempt: 2,
            fencing_token: 7,
            ttl_ms: 30_000,
            job: JobSpec {
                image: "busybox".into(),
                command: vec!["echo".into(), "hi".into()],
                outputs: Some(Outputs {
                    path: "/out".into(),
                    max_bytes: 1 << 20,
                }),
                ..Default::default()
            },
        }],
    };
    let body = ok_answer(&answer);
    let mut value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(value["result"], "ok");
    value["added_by_a_newer_coordinator"] = serde_json::json!({"x": 1});
    value["leases"][0]["job"]["network"] = "carrier-pigeon".into();
    let parsed: PollAnswer = parse_answer(&serde_json::to_vec(&value).unwrap()).unwrap();
    assert_eq!(parsed.leases[0].fencing_token, 7);
    assert_eq!(parsed.leases[0].job.network, Network::Unknown);
    assert_eq!(parsed.leases[0].job.outputs, answer.leases[0].job.outputs);
}

#[test]
fn errors_parse_with_their_code_and_extra_fields() {
    let body = br#"{"error":{"code":"sequence_gap","message":"expected 4","expected_seq":4}}"#;
    match parse_answer::<LogAnswer>(body) {
        Err(AnswerError::Refused(error)) => {
            assert_eq!(error.code, ErrorCode::SequenceGap);
            assert_eq!(error.expected_seq, Some(4));
        }
        other => panic!("{other:?}"),
    }
    let body = br#"{"error":{"code":"from_the_future","message":"?"}}"#;
    match parse_answer::<LogAnswer>(body) {
        Err(AnswerError::Refused(error)) => assert_eq!(error.code, ErrorCode::Unknown),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_answer_without_result_ok_is_not_success() {
    assert!(matches!(
        parse_answer::<LogAnswer>(br#"{"error":"ok"}"#),
        Err(AnswerError::Shape(_))
    ));
    assert!(matches!(
        parse_answer::<LogAnswer>(br#"{"next_seq":1}"#),
        Err(AnswerError::NoResult)
    ));
    assert!(matches!(
        parse_answer::<LogAnswer>(b"<html>"),
        Err(AnswerError::NotJson(_))
    ));
}

#[test]
fn reports_round_trip_and_keys_name_the_change() {
    let report = Report {
        idempotency_key: idempotency_key("l1", 3, JobState::Exited),
        seq: 9,
        lease_id: "l1".into(),
        job_id: "j1".into(),
        fencing_token: 3,
        state: JobState::Exited,
        at_ms: 1,
        container_id: Some("c".into()),
        exit: Some(ExitInfo {
            code: Some(137),
            oom_killed: true,
            reason_code: ReasonCode::OomKilled,
            reason: "the kernel's OOM killer".into(),
            refusal: None,
        }),
        usage: Some(Usage {
            cpu_user_s: 1.5,
            ..Default::default()
        }),
        outputs: None,
        earnings: None,
    };
    assert_eq!(report.idempotency_key, "l1:3:exited");
    let text = serde_json::to_string(&report).unwrap();
    assert!(text.contains(r#""reason_code":"oom_killed""#), "{text}");
    let back: Report = serde_json::from_str(&text).unwrap();
    assert_eq!(back, report);
    assert!(JobState::Lost.is_final() && !JobState::Running.is_final());
}

#[test]
fn credentials_do_not_print() {
    let auth = RegistryAuth {
        username: "u".into(),
        password: "hunter2".into(),
    };
    assert_eq!(format!("{auth:?}"), "RegistryAuth(***)");
}
