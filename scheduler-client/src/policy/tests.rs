use super::*;
use crate::protocol::Requester;

fn policy() -> Policy {
    Policy {
        max_cpus: Some(4.0),
        max_memory: Some("8g".into()),
        max_gpus: Some(1),
        max_time_limit: Some("2h".into()),
        allowed_registries: vec!["ghcr.io".into(), "docker.io".into()],
        refused_registries: vec!["evil.example".into()],
        allowed_images: vec!["ghcr.io/good/*".into(), "docker.io/library/*".into()],
        refused_images: vec!["ghcr.io/good/miner*".into()],
        gpu_models: vec!["RTX 4090".into()],
        network_modes: vec!["none".into(), "internet".into()],
        min_dust: Some(10),
    }
}

fn prices() -> Prices {
    Prices {
        cpu_hour: 1.0,
        memory_gb_hour: 0.5,
        gpu_hour: [("RTX 4090".to_owned(), 20.0), ("default".to_owned(), 10.0)].into(),
        egress_gb: 0.1,
    }
}

/// A job exactly at every limit, paying exactly the floors.
fn at_limits() -> JobSpec {
    JobSpec {
        image: "ghcr.io/good/train:1".into(),
        cpus: Some(4.0),
        memory_bytes: Some(8 << 30),
        gpus: Some("1".into()),
        gpu_model: Some("RTX 4090".into()),
        time_limit_ms: Some(2 * 3_600_000),
        network: Network::Internet,
        requester: Some(Requester {
            account: "acct".into(),
            dust: 10,
        }),
        offer: Some(prices()),
        ..Default::default()
    }
}

/// One change to the job at the limits.
type Change = Box<dyn Fn(&mut JobSpec)>;

fn code(job: &JobSpec) -> Option<&'static str> {
    match check(job, &policy(), &prices()) {
        Decision::Accept => None,
        Decision::Refuse(r) => Some(r.code),
    }
}

#[test]
fn a_job_at_every_limit_passes_and_each_limit_refuses_with_its_code() {
    assert_eq!(code(&at_limits()), None);
    let cases: Vec<(&str, Change)> = vec![
        ("cpus_over_limit", Box::new(|j| j.cpus = Some(4.5))),
        ("cpus_over_limit", Box::new(|j| j.cpus = None)),
        (
            "memory_over_limit",
            Box::new(|j| j.memory_bytes = Some((8 << 30) + 1)),
        ),
        ("gpus_over_limit", Box::new(|j| j.gpus = Some("all".into()))),
        (
            "gpus_over_limit",
            Box::new(|j| j.gpus = Some("device=0,1".into())),
        ),
        (
            "time_limit_over_limit",
            Box::new(|j| j.time_limit_ms = Some(2 * 3_600_000 + 1)),
        ),
        (
            "time_limit_over_limit",
            Box::new(|j| j.time_limit_ms = None),
        ),
        (
            "registry_refused",
            Box::new(|j| j.image = "evil.example/x:1".into()),
        ),
        (
            "registry_not_allowed",
            Box::new(|j| j.image = "quay.io/x/y".into()),
        ),
        (
            "image_refused",
            Box::new(|j| j.image = "ghcr.io/good/miner-xmr:2".into()),
        ),
        (
            "image_not_allowed",
            Box::new(|j| j.image = "ghcr.io/other/x".into()),
        ),
        (
            "gpu_model_not_allowed",
            Box::new(|j| j.gpu_model = Some("H100".into())),
        ),
        (
            "dust_too_low",
            Box::new(|j| {
                j.requester = Some(Requester {
                    account: "a".into(),
                    dust: 9,
                })
            }),
        ),
        ("dust_too_low", Box::new(|j| j.requester = None)),
        (
            "price_cpu_below_floor",
            Box::new(|j| j.offer.as_mut().unwrap().cpu_hour = 0.99),
        ),
        (
            "price_memory_below_floor",
            Box::new(|j| j.offer.as_mut().unwrap().memory_gb_hour = 0.4),
        ),
        (
            "price_gpu_below_floor",
            Box::new(|j| {
                j.offer
                    .as_mut()
                    .unwrap()
                    .gpu_hour
                    .insert("RTX 4090".into(), 19.0);
            }),
        ),
        (
            "price_egress_below_floor",
            Box::new(|j| j.offer.as_mut().unwrap().egress_gb = 0.0),
        ),
        ("no_image", Box::new(|j| j.image = " ".into())),
        (
            "unknown_network",
            Box::new(|j| j.network = Network::Unknown),
        ),
    ];
    for (expected, change) in cases {
        let mut job = at_limits();
        change(&mut job);
        assert_eq!(code(&job), Some(expected), "{job:?}");
    }
    // docker.io names: `busybox` is docker.io/library/busybox, allowed by the pattern.
    let mut job = at_limits();
    job.image = "busybox:1.36".into();
    assert_eq!(code(&job), None);
    // No egress price applies without the network.
    job.network = Network::None;
    job.offer.as_mut().unwrap().egress_gb = 0.0;
    assert_eq!(code(&job), None);
    // An empty policy and no prices take anything with an image.
    assert_eq!(
        check(
            &JobSpec {
                image: "x".into(),
                ..Default::default()
            },
            &Policy::default(),
            &Prices::default()
        ),
        Decision::Accept
    );
}

#[test]
fn a_refusal_names_its_limit_and_what_was_asked() {
    let mut job = at_limits();
    job.cpus = Some(16.0);
    let Decision::Refuse(refusal) = check(&job, &policy(), &prices()) else {
        panic!("accepted")
    };
    assert_eq!(
        (refusal.limit.as_str(), refusal.asked.as_str()),
        ("4", "16")
    );
    assert!(refusal.to_string().contains("more CPUs"));
}

#[test]
fn the_quote_is_resources_times_the_time_limit_times_the_prices() {
    let q = quote(&at_limits(), &prices(), 8.0).unwrap();
    assert_eq!(q.hours, 2.0);
    assert_eq!(q.cpu, 8.0);
    assert!((q.memory - (8u64 << 30) as f64 / 1e9 * 2.0 * 0.5).abs() < 1e-9);
    assert_eq!(q.gpu, 40.0);
    assert!((q.total - (q.cpu + q.memory + q.gpu)).abs() < 1e-9);
    assert_eq!(q.egress_per_gb, 0.1);
    let mut open = at_limits();
    open.time_limit_ms = None;
    assert!(
        quote(&open, &prices(), 8.0).is_none(),
        "no time limit: no upper bound"
    );
}

#[test]
fn patterns_and_references() {
    assert!(matches("ghcr.io/*/x", "ghcr.io/a/b/x"));
    assert!(!matches("ghcr.io/*/x", "ghcr.io/a/y"));
    assert_eq!(registry_of("localhost:5000/a"), "localhost:5000");
    assert_eq!(
        repository_of("127.0.0.1:5000/a/b:tag"),
        "127.0.0.1:5000/a/b"
    );
    assert_eq!(
        repository_of("ubuntu@sha256:00"),
        "docker.io/library/ubuntu"
    );
}
