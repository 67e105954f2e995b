use super::*;
use crate::commands::lookup;

fn args(words: &[&str]) -> Vec<Bytes> {
    words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

fn check(user: &User, words: &[&str]) -> Result<(), Denied> {
    let a = args(words);
    user.check(lookup(&a[0]).expect("known command"), &a)
}

fn user(rules: &[&str]) -> User {
    let mut acl = Acl::new(None);
    acl.set_user("u", &args(rules)).expect("valid rules");
    acl.user("u").cloned().expect("created")
}

#[test]
fn every_unit_names_known_categories_and_is_sorted() {
    let names: Vec<&str> = categories::UNITS.iter().map(|(n, _)| *n).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(names, sorted);
    for (name, cats) in categories::UNITS {
        for c in cats.split_whitespace() {
            assert!(categories::CATEGORIES.contains(&c), "{name}: {c}");
        }
    }
}

#[test]
fn every_command_of_the_table_has_categories() {
    for name in crate::commands::table().keys() {
        assert!(
            units().index.contains_key(name),
            "command {name} has no ACL categories"
        );
    }
}

#[test]
fn default_user_is_open_without_password_and_closed_with_one() {
    let open = Acl::new(None);
    assert!(open.default_is_open());
    assert!(open.authenticate(b"default", b"anything").is_ok());
    let closed = Acl::new(Some(b"s3cret"));
    assert!(!closed.default_is_open());
    assert!(closed.authenticate(b"default", b"s3cret").is_ok());
    assert_eq!(
        closed.authenticate(b"default", b"wrong").err(),
        Some(WRONGPASS)
    );
    assert_eq!(
        closed.authenticate(b"nobody", b"s3cret").err(),
        Some(WRONGPASS)
    );
}

#[test]
fn internal_user_restricts_default_to_application_commands() {
    let acl = Acl::new(Some(b"app")).with_internal_user("aadb-internal", b"inner");
    let default = acl.user(DEFAULT_USER).unwrap();
    for allowed in [
        &["get", "k"][..],
        &["set", "k", "v"],
        &["client", "setname", "x"],
        &["client", "id"],
        &["flushall"],
        &["info"],
        &["publish", "c", "m"],
        &["cluster", "slots"],
        &["acl", "whoami"],
    ] {
        assert_eq!(check(default, allowed), Ok(()), "{allowed:?}");
    }
    for refused in [
        &["replicaof", "h", "1"][..],
        &["aa.peer", "set", "x", "h:1"],
        &["aa.topology", "set", "1", "m"],
        &["aa.sync"],
        &["replconf", "ack", "1"],
        &["config", "set", "requirepass", "x"],
        &["shutdown"],
        &["client", "pause", "100"],
        &["client", "unpause"],
        &["acl", "setuser", "x"],
    ] {
        assert!(
            matches!(check(default, refused), Err(Denied::Command(_))),
            "{refused:?}"
        );
    }
    assert_eq!(
        check(default, &["client", "pause", "1"]),
        Err(Denied::Command("client|pause".into()))
    );
    let internal = acl.authenticate(b"aadb-internal", b"inner").unwrap();
    assert_eq!(check(internal, &["aa.peer", "set", "x", "h:1"]), Ok(()));
    assert!(acl.authenticate(b"aadb-internal", b"app").is_err());
}

#[test]
fn rules_apply_in_order() {
    let u = user(&["on", ">p", "+@all", "-get", "~*"]);
    assert!(check(&u, &["get", "k"]).is_err());
    assert!(check(&u, &["set", "k", "v"]).is_ok());
    let u = user(&["on", "nopass", "-@all", "+@read", "-get", "+get", "~*"]);
    assert!(check(&u, &["get", "k"]).is_ok());
    assert!(check(&u, &["set", "k", "v"]).is_err());
    let u = user(&["on", "+@all", "-config", "+config|get", "~*"]);
    assert!(check(&u, &["config", "get", "x"]).is_ok());
    assert!(check(&u, &["config", "set", "x", "y"]).is_err());
    let u = user(&["reset", "+get", "~*"]);
    assert!(!u.enabled && check(&u, &["get", "k"]).is_ok());
}

#[test]
fn keys_and_channels_are_checked() {
    let u = user(&["on", "+@all", "~app:*", "&news.*"]);
    assert_eq!(check(&u, &["get", "app:1"]), Ok(()));
    assert_eq!(check(&u, &["get", "other"]), Err(Denied::Key));
    assert_eq!(
        check(&u, &["mset", "app:1", "v", "x", "v"]),
        Err(Denied::Key)
    );
    assert_eq!(
        check(&u, &["lmpop", "2", "app:1", "x", "left"]),
        Err(Denied::Key)
    );
    assert_eq!(check(&u, &["publish", "news.a", "m"]), Ok(()));
    assert_eq!(check(&u, &["publish", "sport", "m"]), Err(Denied::Channel));
    assert_eq!(
        check(&u, &["subscribe", "news.a", "sport"]),
        Err(Denied::Channel)
    );
    assert_eq!(check(&u, &["psubscribe", "news.*"]), Ok(()));
    assert_eq!(check(&u, &["psubscribe", "news.a*"]), Err(Denied::Channel));
}

#[test]
fn bad_rules_change_nothing_and_say_why() {
    let mut acl = Acl::new(None);
    acl.set_user("u", &args(&["on", ">p", "+get"])).unwrap();
    let before = acl.user("u").unwrap().describe();
    for (rules, reason) in [
        (&["bogus"][..], RuleError::Syntax),
        (&["+@nope"], RuleError::UnknownCommand),
        (&["+nope"], RuleError::UnknownCommand),
        (&["+client|nothing"], RuleError::UnknownCommand),
        (&["<nope"], RuleError::NoSuchPassword),
        (&["#abc"], RuleError::BadHash),
        (&["allkeys", "~x"], RuleError::KeysAfterAll),
        (&["allchannels", "&x"], RuleError::ChannelsAfterAll),
        (&["off", "+set", "%R~x"], RuleError::Syntax),
    ] {
        let err = acl.set_user("u", &args(rules)).unwrap_err();
        assert_eq!(err.reason, reason, "{rules:?}");
        assert_eq!(acl.user("u").unwrap().describe(), before);
    }
    assert_eq!(
        acl.set_user("u", &args(&["bogus"]))
            .unwrap_err()
            .to_string(),
        "ERR Error in ACL SETUSER modifier 'bogus': Syntax error"
    );
}

#[test]
fn description_round_trips_through_an_acl_file() {
    let mut acl = Acl::new(None);
    acl.set_user(
        "u",
        &args(&[
            "on",
            ">p",
            "~a*",
            "&c*",
            "-@all",
            "+@read",
            "-get",
            "+client|setname",
        ]),
    )
    .unwrap();
    let line = format!("user {}", acl.user("u").unwrap().describe());
    assert_eq!(
        line,
        format!(
            "user u on #{} ~a* resetchannels &c* -@all +@read -get +client|setname",
            hex(&digest(b"p"))
        )
    );
    let mut again = Acl::new(None);
    again.load_file_text(&line).unwrap();
    assert_eq!(
        again.user("u").unwrap().describe(),
        acl.user("u").unwrap().describe()
    );
    assert!(again.authenticate(b"u", b"p").is_ok());
    assert!(again.load_file_text("nonsense").is_err());
}

#[test]
fn passwords_are_never_in_debug_output() {
    let acl = Acl::new(Some(b"topsecret")).with_internal_user("i", b"inner-secret");
    let shown = format!("{acl:?}");
    assert!(!shown.contains("topsecret") && !shown.contains("inner-secret"));
    assert!(!shown.contains(&hex(&digest(b"topsecret"))));
}

#[test]
fn deleting_default_is_refused() {
    let mut acl = Acl::new(None);
    assert!(acl.delete_users(&args(&["default"])).is_err());
    acl.set_user("x", &args(&["on"])).unwrap();
    assert_eq!(acl.delete_users(&args(&["x", "y"])), Ok(1));
}
