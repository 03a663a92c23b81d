//! Regressions found in the review of the registry client, auth and pull pipeline.

use crate::support::images::{self, host_arch, other_arch, Image, Pusher};
use crate::support::registry::TestRegistry;
use crate::support::{registry_prereqs, Farm};

/// A single-platform image (no index) for another architecture was pulled silently, even
/// with an explicit `--platform` for the host. Now: an error naming both platforms when
/// `--platform` was given, a warning otherwise (docker's behaviour).
#[test]
fn single_platform_image_of_another_arch_is_checked_against_platform() {
    if !registry_prereqs() {
        return;
    }
    let registry = TestRegistry::anonymous();
    let image = Image::build(images::standard_layers(false), "linux", other_arch(), false);
    Pusher::new(&registry.host()).push_image("e2e/foreign", Some("1"), &image);
    let reference = format!("{}/e2e/foreign:1", registry.host());

    let farm = Farm::new();
    let wanted = format!("linux/{}", host_arch());
    let run = farm.run(&["pull", "--platform", &wanted, &reference]);
    run.assert_farm_error();
    assert!(
        run.stderr
            .contains(&format!("is for platform linux/{}", other_arch()))
            && run.stderr.contains(&format!("not the requested {wanted}")),
        "{run:#?}"
    );
    assert!(farm.images().is_empty(), "nothing recorded: {run:#?}");

    let run = farm.run(&["pull", &reference]);
    run.assert_ok();
    assert!(
        run.stderr.contains("warning:")
            && run
                .stderr
                .contains(&format!("is for platform linux/{}", other_arch())),
        "{run:#?}"
    );
    assert_eq!(farm.images().len(), 1);

    // The platform it declares is accepted when asked for.
    let farm = Farm::new();
    farm.run(&[
        "pull",
        "--platform",
        &format!("linux/{}", other_arch()),
        &reference,
    ])
    .assert_ok();
}
