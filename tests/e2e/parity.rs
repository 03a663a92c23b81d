//! Where `farm` matches docker's outputs on the same case: `/etc/mtab`, HOME without a
//! passwd entry, `farm images` columns for every kind of reference.

use crate::support::containers::RunFarm;

#[test]
fn etc_mtab_links_to_proc_mounts_as_docker() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let run = farm.run_probe(
        &[],
        &[
            "sh",
            "-c",
            "readlink /etc/mtab; grep -c ' /proc ' /etc/mtab",
        ],
    );
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.stdout, "/proc/mounts\n1\n", "{run:#?}");
}

#[test]
fn home_is_root_dir_for_a_user_without_passwd_entry() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let run = farm.run_probe(&["-u", "4242"], &["sh", "-c", "echo $HOME"]);
    assert_eq!(run.stdout, "/\n", "{run:#?}");
    let run = farm.run_probe(&["-u", "user"], &["sh", "-c", "echo $HOME"]);
    assert_eq!(run.stdout, "/home/user\n", "{run:#?}");
}

#[test]
fn images_shows_an_oci_layouts_tag_in_the_tag_column() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let run = farm.run(&["images"]);
    assert_eq!(run.code, 0, "{run:#?}");
    let mut lines = run.stdout.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        ["REPOSITORY", "TAG", "IMAGE ID", "SIZE"],
        "{run:#?}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[0], format!("oci:{}", farm.layout.display()), "{run:#?}");
    assert_eq!(row[1], "probe", "{run:#?}");
}

#[test]
fn tag_names_the_same_image_twice_as_docker() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    farm.run(&["tag", &farm.probe(), "example.com/team/probe:v1"])
        .assert_ok();
    farm.run(&["tag", "example.com/team/probe:v1", "probe2"])
        .assert_ok();
    let run = farm.run(&["images"]);
    let rows: Vec<Vec<&str>> = run
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let row = |repository: &str| rows.iter().find(|r| r[0] == repository).cloned();
    let original = row(&format!("oci:{}", farm.layout.display())).expect("the original");
    assert_eq!(
        row("example.com/team/probe").map(|r| (r[1], r[2])),
        Some(("v1", original[2])),
        "{run:#?}"
    );
    assert_eq!(
        row("probe2").map(|r| (r[1], r[2])),
        Some(("latest", original[2])),
        "docker.io/library and latest: {run:#?}"
    );

    let run = farm.run(&["run", "--rm", "example.com/team/probe:v1", "true"]);
    assert_eq!(run.code, 0, "runs from the store without a pull: {run:#?}");
    farm.run(&["rmi", "probe2"]).assert_ok();
    assert!(
        farm.run(&["images"])
            .stdout
            .contains("example.com/team/probe"),
        "the other names stay"
    );

    let run = farm.run(&["tag", "nosuch", "x:y"]);
    assert_eq!(run.code, 125, "{run:#?}");
    let run = farm.run(&["tag", &farm.probe(), "Bad Name"]);
    assert_eq!(run.code, 125, "{run:#?}");
}
