//! `farm cp` both ways with a running container: folders, symlinks kept as symlinks,
//! ownership through the container's id range, and the docker cp race (CVE-2018-15664):
//! a symlink the container swaps in a loop never makes farm read or write a host file.

use std::os::unix::fs::MetadataExt;

use crate::support::containers::RunFarm;

fn running_box(farm: &RunFarm, script: &str) {
    farm.detach(&["--name", "box"], &farm.probe(), &["sh", "-c", script]);
}

#[test]
fn cp_copies_folders_both_ways_with_ownership_mapped() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    running_box(&farm, "exec sleep 1000");
    let host = farm.dir.path().join("host");
    std::fs::create_dir_all(host.join("tree/sub")).unwrap();
    std::fs::write(host.join("tree/a.txt"), "from the host\n").unwrap();
    std::fs::write(host.join("tree/sub/b.txt"), "deeper\n").unwrap();
    std::os::unix::fs::symlink("/etc/shadow", host.join("tree/link")).unwrap();
    farm.run(&["cp", host.join("tree").to_str().unwrap(), "box:/tmp/"])
        .assert_ok();
    let run = farm.run(&[
        "exec", "box", "sh", "-c",
        "cat /tmp/tree/a.txt /tmp/tree/sub/b.txt; stat -c %u:%g /tmp/tree/a.txt /tmp/tree; readlink /tmp/tree/link",
    ]);
    assert_eq!(
        run.stdout, "from the host\ndeeper\n0:0\n0:0\n/etc/shadow\n",
        "owned by the container's root, the link kept as a link: {run:#?}"
    );

    farm.run(&[
        "exec",
        "-u",
        "user",
        "box",
        "sh",
        "-c",
        "mkdir /home/user/d && echo mine > /home/user/d/own",
    ])
    .assert_ok();
    let out = farm.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    farm.run(&["cp", "box:/home/user/d", out.to_str().unwrap()])
        .assert_ok();
    let copied = out.join("d/own");
    assert_eq!(std::fs::read_to_string(&copied).unwrap(), "mine\n");
    let meta = std::fs::metadata(&copied).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (1000, 1000),
        "the container's ids, unshifted"
    );
    // A file to a new name.
    farm.run(&[
        "cp",
        "box:/tmp/tree/a.txt",
        out.join("renamed").to_str().unwrap(),
    ])
    .assert_ok();
    assert_eq!(
        std::fs::read_to_string(out.join("renamed")).unwrap(),
        "from the host\n"
    );
}

#[test]
fn cp_never_follows_a_symlink_out_of_the_container_even_when_swapped() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let secret_dir = farm.dir.path().join("secret");
    std::fs::create_dir(&secret_dir).unwrap();
    std::fs::write(secret_dir.join("marker"), "HOST SECRET\n").unwrap();
    let script = format!(
        "mkdir -p /tmp/real && echo CONTAINER > /tmp/real/marker && ln -s /etc/passwd /tmp/final && \
         while :; do ln -sfn {} /tmp/swap; ln -sfn /tmp/real /tmp/swap; ln -sfn / /tmp/swap; done",
        secret_dir.display()
    );
    running_box(&farm, &script);
    let payload = farm.dir.path().join("pwned");
    std::fs::write(&payload, "payload\n").unwrap();
    let out = farm.dir.path().join("out");
    let mut read_ok = 0;
    let mut write_ok = 0;
    for _ in 0..40 {
        let _ = std::fs::remove_file(&out);
        if farm
            .run(&["cp", "box:/tmp/swap/marker", out.to_str().unwrap()])
            .ok()
        {
            read_ok += 1;
            let text = std::fs::read_to_string(&out).unwrap();
            assert_eq!(text, "CONTAINER\n", "never the host's file");
        }
        if farm
            .run(&["cp", payload.to_str().unwrap(), "box:/tmp/swap/pwned"])
            .ok()
        {
            write_ok += 1;
        }
        assert!(
            !secret_dir.join("pwned").exists(),
            "nothing written on the host"
        );
        assert!(
            !std::path::Path::new("/pwned").exists(),
            "nothing written at the host's /"
        );
    }
    assert!(
        read_ok > 0 && write_ok > 0,
        "the race was run: {read_ok} reads, {write_ok} writes"
    );
    assert_eq!(
        std::fs::read_to_string(secret_dir.join("marker")).unwrap(),
        "HOST SECRET\n"
    );

    // A symlink at the final name is refused, not followed (to the container's own passwd).
    let run = farm.run(&["cp", payload.to_str().unwrap(), "box:/tmp/final"]);
    assert_eq!(run.code, 125, "{run:#?}");
    assert!(
        run.stderr.contains("is a symlink in the container"),
        "{run:#?}"
    );
    let run = farm.run(&["exec", "box", "head", "-1", "/etc/passwd"]);
    assert!(run.stdout.starts_with("root:"), "{run:#?}");
}

#[test]
fn cp_works_on_a_stopped_container_inside_its_rootfs() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let secret_dir = farm.dir.path().join("secret");
    std::fs::create_dir(&secret_dir).unwrap();
    std::fs::write(secret_dir.join("marker"), "HOST SECRET\n").unwrap();
    let script = format!(
        "mkdir /out && echo made > /out/file && chown 1000:1000 /out/file && ln -s {} /out/via",
        secret_dir.display()
    );
    farm.run_probe(&["--name", "box"], &["sh", "-c", &script])
        .assert_ok();
    assert_eq!(farm.inspect("box")["State"]["Status"], "exited");

    let host = farm.dir.path().join("host");
    std::fs::create_dir(&host).unwrap();
    farm.run(&["cp", "box:/out/file", host.join("file").to_str().unwrap()])
        .assert_ok();
    assert_eq!(
        std::fs::read_to_string(host.join("file")).unwrap(),
        "made\n"
    );
    let meta = std::fs::metadata(host.join("file")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (1000, 1000),
        "ids as the container saw them"
    );

    // The symlink to a host path resolves inside the container's root, where it is missing.
    let run = farm.run(&[
        "cp",
        "box:/out/via/marker",
        host.join("m").to_str().unwrap(),
    ]);
    assert_eq!(run.code, 125, "{run:#?}");
    assert!(!host.join("m").exists(), "{run:#?}");
    let payload = farm.dir.path().join("payload");
    std::fs::write(&payload, "payload\n").unwrap();
    let _ = farm.run(&["cp", payload.to_str().unwrap(), "box:/out/via/pwned"]);
    assert!(
        !secret_dir.join("pwned").exists(),
        "nothing written on the host"
    );

    // Copied in: into the container's writable layer, owned by its root.
    farm.run(&["cp", payload.to_str().unwrap(), "box:/in.txt"])
        .assert_ok();
    let inspect = farm.inspect("box");
    let id = inspect["Id"].as_str().unwrap();
    let upper = farm.root().join("containers").join(id).join("upper/in.txt");
    assert_eq!(std::fs::read_to_string(&upper).unwrap(), "payload\n");
    assert_eq!(
        u64::from(std::fs::metadata(&upper).unwrap().uid()),
        inspect["IdMap"]["Uid"].as_u64().unwrap()
    );
    farm.run(&["cp", "box:/in.txt", host.join("back").to_str().unwrap()])
        .assert_ok();
    assert_eq!(
        std::fs::read_to_string(host.join("back")).unwrap(),
        "payload\n"
    );
    assert!(
        crate::support::containers::mounts_under(&farm.root()).is_empty(),
        "the overlay was mounted in farm cp's own namespace only"
    );
}
