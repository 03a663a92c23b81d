//! The process's argv and environment, with docker's rules for Entrypoint/Cmd and for
//! merging environments.

use oci_spec::image::Config;

use super::SpecError;
use crate::options::RunOptions;

/// docker's (and runc's) PATH when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// argv: `--entrypoint` replaces the image's Entrypoint and clears its Cmd (`Some([])`
/// clears both); a COMMAND replaces Cmd; argv = entrypoint ++ cmd.
pub(crate) fn args(
    config: Option<&Config>,
    options: &RunOptions,
) -> Result<Vec<String>, SpecError> {
    let image_entrypoint = config
        .and_then(|c| c.entrypoint().clone())
        .unwrap_or_default();
    let image_cmd = config.and_then(|c| c.cmd().clone()).unwrap_or_default();
    let (entrypoint, cmd) = match &options.entrypoint {
        Some(entrypoint) => (entrypoint.clone(), options.command.clone()),
        None if !options.command.is_empty() => (image_entrypoint, options.command.clone()),
        None => (image_entrypoint, image_cmd),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    if args.iter().any(|a| a.contains('\0')) {
        return Err(SpecError::Invalid(
            "an argument of the command holds a NUL byte".to_owned(),
        ));
    }
    Ok(args)
}

/// The environment: `PATH` (docker's default, replaced by the image's), `HOSTNAME`,
/// `TERM=xterm` with a tty, then the image's Env, then `-e`, each later entry replacing
/// an earlier one with the same key in place (docker's ReplaceOrAppendEnvValues).
/// `HOME` is added by the caller when still unset.
pub(crate) fn env(
    config: Option<&Config>,
    options: &RunOptions,
    hostname: &str,
) -> Result<Vec<String>, SpecError> {
    let mut env = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    if options.tty {
        env.push("TERM=xterm".to_owned());
    }
    let image_env = config.and_then(|c| c.env().as_ref());
    for entry in image_env.into_iter().flatten() {
        set(&mut env, entry, "the image's Env")?;
    }
    for entry in &options.env {
        set(&mut env, entry, "-e/--env")?;
    }
    Ok(env)
}

/// The value of `key` in a KEY=VALUE list (the last one, as getenv would find after a
/// merge without duplicates).
pub(crate) fn lookup<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter().rev().find_map(|entry| {
        let (k, v) = entry.split_once('=')?;
        (k == key).then_some(v)
    })
}

/// `base` with `extra` applied as [`set`] applies them (same key replaced in place), for
/// showing a container's environment; an entry `set` would refuse is kept as it is.
pub fn merged(base: Vec<String>, extra: &[String]) -> Vec<String> {
    let mut env = base;
    for entry in extra {
        if set(&mut env, entry, "").is_err() {
            env.push(entry.clone());
        }
    }
    env
}

/// Replace the entry with the same key in place, or append.
pub(crate) fn set(env: &mut Vec<String>, entry: &str, origin: &str) -> Result<(), SpecError> {
    let key = match entry.split_once('=') {
        Some((key, _)) if !key.is_empty() && !entry.contains('\0') => key,
        _ => {
            return Err(SpecError::Invalid(format!(
                "invalid environment variable {entry:?} in {origin}: entries are KEY=VALUE with a non-empty KEY and no NUL byte"
            )))
        }
    };
    match env
        .iter_mut()
        .find(|e| e.split_once('=').is_some_and(|(k, _)| k == key))
    {
        Some(existing) => *existing = entry.to_owned(),
        None => env.push(entry.to_owned()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use oci_spec::image::ConfigBuilder;

    use super::*;

    fn config(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> Config {
        let mut builder = ConfigBuilder::default();
        if let Some(e) = entrypoint {
            builder = builder.entrypoint(e.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }
        if let Some(c) = cmd {
            builder = builder.cmd(c.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }
        builder.build().unwrap()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn run(
        image: Option<&Config>,
        entrypoint: Option<&[&str]>,
        command: &[&str],
    ) -> Result<Vec<String>, SpecError> {
        let options = RunOptions {
            entrypoint: entrypoint.map(strings),
            command: strings(command),
            ..Default::default()
        };
        args(image, &options)
    }

    #[test]
    fn entrypoint_and_cmd_combinations() {
        let both = config(Some(&["/ep", "-x"]), Some(&["cmd", "arg"]));
        let ep_only = config(Some(&["/ep"]), None);
        let cmd_only = config(None, Some(&["sh", "-c", "true"]));
        let neither = config(None, None);
        let ok = |v: Result<Vec<String>, SpecError>| v.unwrap();

        // Image alone.
        assert_eq!(ok(run(Some(&both), None, &[])), ["/ep", "-x", "cmd", "arg"]);
        assert_eq!(ok(run(Some(&ep_only), None, &[])), ["/ep"]);
        assert_eq!(ok(run(Some(&cmd_only), None, &[])), ["sh", "-c", "true"]);
        // COMMAND replaces Cmd, keeps Entrypoint.
        assert_eq!(
            ok(run(Some(&both), None, &["x", "y"])),
            ["/ep", "-x", "x", "y"]
        );
        assert_eq!(ok(run(Some(&ep_only), None, &["x"])), ["/ep", "x"]);
        assert_eq!(ok(run(Some(&cmd_only), None, &["x"])), ["x"]);
        assert_eq!(ok(run(Some(&neither), None, &["x"])), ["x"]);
        assert_eq!(ok(run(None, None, &["x"])), ["x"]);
        // --entrypoint replaces Entrypoint and clears the image's Cmd.
        assert_eq!(ok(run(Some(&both), Some(&["/new"]), &[])), ["/new"]);
        assert_eq!(ok(run(Some(&cmd_only), Some(&["/new"]), &[])), ["/new"]);
        assert_eq!(ok(run(Some(&both), Some(&["/new"]), &["a"])), ["/new", "a"]);
        // --entrypoint "" clears both; COMMAND still applies.
        assert_eq!(ok(run(Some(&both), Some(&[]), &["a", "b"])), ["a", "b"]);
        assert_eq!(ok(run(Some(&ep_only), Some(&[]), &["a"])), ["a"]);
    }

    #[test]
    fn no_command_is_an_error() {
        let both = config(Some(&["/ep"]), Some(&["cmd"]));
        for result in [
            run(Some(&both), Some(&[]), &[]),
            run(Some(&config(None, None)), None, &[]),
            run(None, None, &[]),
            run(Some(&config(Some(&[]), Some(&[]))), None, &[]),
        ] {
            let err = result.unwrap_err();
            assert!(matches!(err, SpecError::NoCommand));
            assert_eq!(err.to_string(), "no command specified");
        }
    }

    #[test]
    fn nul_in_argv_is_refused() {
        assert!(run(None, None, &["a\0b"]).is_err());
    }

    fn env_of(image: &[&str], user: &[&str], tty: bool) -> Result<Vec<String>, SpecError> {
        let config = ConfigBuilder::default()
            .env(strings(image))
            .build()
            .unwrap();
        let options = RunOptions {
            env: strings(user),
            tty,
            ..Default::default()
        };
        env(Some(&config), &options, "abc123")
    }

    #[test]
    fn env_defaults_then_image_then_options() {
        assert_eq!(
            env_of(&[], &[], false).unwrap(),
            [format!("PATH={DEFAULT_PATH}"), "HOSTNAME=abc123".to_owned()]
        );
        assert_eq!(
            env_of(&["A=1", "B=2"], &["C=3"], true).unwrap(),
            strings(&[
                &format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=abc123",
                "TERM=xterm",
                "A=1",
                "B=2",
                "C=3"
            ])
        );
    }

    #[test]
    fn env_later_wins_in_place() {
        assert_eq!(
            env_of(
                &["PATH=/img/bin", "A=1", "B=2", "A=again"],
                &[
                    "B=user",
                    "TERM=dumb",
                    "HOSTNAME=mine",
                    "D=",
                    "A=last=with=equals"
                ],
                true
            )
            .unwrap(),
            strings(&[
                "PATH=/img/bin",
                "HOSTNAME=mine",
                "TERM=dumb",
                "A=last=with=equals",
                "B=user",
                "D="
            ])
        );
    }

    #[test]
    fn env_entries_must_be_key_value() {
        for bad in ["NOEQUALS", "=value", "A=b\0c", ""] {
            assert!(env_of(&[], &[bad], false).is_err(), "{bad:?}");
            assert!(env_of(&[bad], &[], false).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lookup_finds_the_value() {
        let env = strings(&["PATH=/a:/b", "X=1=2"]);
        assert_eq!(lookup(&env, "PATH"), Some("/a:/b"));
        assert_eq!(lookup(&env, "X"), Some("1=2"));
        assert_eq!(lookup(&env, "Y"), None);
    }
}
