//! `ACL`: the server's side of [`crate::acl::command`].
//!
//! Contract: runs the shared `ACL` command on the server's users; `ACL LOAD` reads
//! `--aclfile`. After users change, connections of users that no longer exist end at their
//! next command (the dispatcher refuses it and closes them).

use super::*;

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("acl", -2, "noscript", 0, 0, 0, "server", "A container for Access List Control commands.", acl),
    ]
}

fn acl(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let file = ctx.db.acl_file.clone();
    crate::acl::command::run(
        &mut ctx.db.acl,
        &ctx.client.user,
        args,
        file.as_deref(),
        &super::is_command,
        &mut ctx.out,
    )
    .map(|_| ())
    .map_err(Cow::Owned)
}
