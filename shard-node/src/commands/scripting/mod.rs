//! Lua scripting: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO, SCRIPT, FUNCTION, FCALL, FCALL_RO.
//!
//! Contract:
//! - Scripts run in an embedded Lua 5.1 interpreter (the `mlua` crate), sandboxed like Redis
//!   7.0's (see [`lua`]); replies, reply conversions ([`convert`]) and error texts are Redis
//!   7.0's.
//! - A script runs atomically: the whole server runs commands under one lock, and every write
//!   of a script is gathered into **one CRDT effect** (the keyspace batch a MULTI/EXEC also
//!   uses), so other regions receive the script's effects, never its text, and apply them at
//!   once. A script inside MULTI adds its writes to the transaction's effect.
//! - The script cache (`SCRIPT LOAD`, `EVAL`) and function libraries (`FUNCTION LOAD`) belong
//!   to this node: they are neither replicated nor persisted, so they are loaded on every node
//!   that runs them (an `EVALSHA` of an unknown script is `NOSCRIPT`).
//! - Limits: a script running longer than `busy-reply-threshold` (alias `lua-time-limit`,
//!   5000 ms by default) is stopped with an error; its writes made until then stay (one
//!   effect). `SCRIPT KILL` / `FUNCTION KILL` answer `NOTBUSY`, since no other command runs
//!   while a script holds the server. Each interpreter's memory is limited to
//!   [`MEMORY_LIMIT`].

pub mod convert;
mod functions;
pub mod libs;
pub mod lua;

use functions::function;

use super::*;
use mlua::Function;
use std::time::Duration;

/// Memory limit of each Lua interpreter.
pub const MEMORY_LIMIT: usize = 256 * 1024 * 1024;
/// Default `busy-reply-threshold` in milliseconds.
pub const DEFAULT_TIME_LIMIT_MS: u64 = 5000;

const NOSCRIPT_ERR: &str = "NOSCRIPT No matching script. Please use EVAL.";
const NOTBUSY: &str = "NOTBUSY No scripts in execution right now.";

/// One function of a library.
struct FunctionDef {
    callback: Function,
    flags: Vec<String>,
    description: Option<String>,
}

/// A loaded library.
struct Library {
    code: Bytes,
    functions: BTreeMap<String, FunctionDef>,
}

/// The scripting state of a node: interpreters, script cache, libraries, limits.
pub struct Engine {
    eval_lua: Option<mlua::Lua>,
    /// SHA1 (lower-case hex) -> compiled script and whether its shebang says `no-writes`.
    scripts: HashMap<String, (Function, bool)>,
    fn_lua: Option<mlua::Lua>,
    libraries: BTreeMap<String, Library>,
    /// `busy-reply-threshold` in milliseconds.
    pub time_limit_ms: u64,
}

impl Default for Engine {
    fn default() -> Self {
        Engine {
            eval_lua: None,
            scripts: HashMap::new(),
            fn_lua: None,
            libraries: BTreeMap::new(),
            time_limit_ms: DEFAULT_TIME_LIMIT_MS,
        }
    }
}

/// Lower-case hex SHA1 of `data`.
pub fn sha1_hex(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("eval", -3, "noscript stale", 0, 0, 0, "scripting", "Executes a server-side Lua script.", eval),
        cmd("evalsha", -3, "noscript stale", 0, 0, 0, "scripting", "Executes a server-side Lua script by SHA1 digest.", evalsha),
        cmd("eval_ro", -3, "readonly noscript stale", 0, 0, 0, "scripting", "Executes a read-only server-side Lua script.", eval),
        cmd("evalsha_ro", -3, "readonly noscript stale", 0, 0, 0, "scripting", "Executes a read-only server-side Lua script by SHA1 digest.", evalsha),
        cmd("fcall", -3, "noscript stale", 0, 0, 0, "scripting", "Invokes a function.", fcall),
        cmd("fcall_ro", -3, "readonly noscript stale", 0, 0, 0, "scripting", "Invokes a read-only function.", fcall),
        cmd("script", -2, "", 0, 0, 0, "scripting", "A container for Lua scripts management commands.", script),
        cmd("function", -2, "", 0, 0, 0, "scripting", "A container for function commands.", function),
    ]
}

fn time_limit(ctx: &Ctx<'_>) -> Duration {
    Duration::from_millis(ctx.db.scripting.time_limit_ms)
}

/// `numkeys` of EVAL / FCALL and the split of the rest into keys and arguments.
fn keys_and_args<'a>(
    args: &'a [Bytes],
    bad_count: &'static str,
) -> Result<(&'a [Bytes], &'a [Bytes]), CmdError> {
    let n = crate::resp::parse_i64_strict(&args[2]).ok_or(Cow::Borrowed(bad_count))?;
    if n < 0 {
        return Err(Cow::Borrowed("ERR Number of keys can't be negative"));
    }
    let rest = &args[3..];
    if n as u64 > rest.len() as u64 {
        return Err(Cow::Borrowed(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    Ok(rest.split_at(n as usize))
}

fn new_state() -> Result<mlua::Lua, CmdError> {
    lua::new_state(MEMORY_LIMIT)
        .map_err(|e| Cow::Owned(format!("ERR could not start the Lua interpreter: {e}")))
}

/// Reads the `#!lua flags=...` line of a script: (body to compile, `no-writes`).
fn shebang(body: &[u8]) -> Result<(&[u8], bool), CmdError> {
    if !body.starts_with(b"#!") {
        return Ok((body, false));
    }
    let end = body.iter().position(|b| *b == b'\n').unwrap_or(body.len());
    let line = String::from_utf8_lossy(&body[..end]).into_owned();
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let engine = parts.next().unwrap_or("");
    if engine != "#!lua" {
        return Err(Cow::Owned(format!(
            "ERR Unexpected engine in script shebang: {engine}"
        )));
    }
    let mut no_writes = false;
    for part in parts {
        let Some(flags) = part.strip_prefix("flags=") else {
            return Err(Cow::Owned(format!(
                "ERR Unknown lua shebang option: {part}"
            )));
        };
        for flag in flags.split(',').filter(|f| !f.is_empty()) {
            match flag {
                "no-writes" => no_writes = true,
                "allow-oom" | "allow-stale" | "no-cluster" | "allow-cross-slot-keys" => {}
                other => {
                    return Err(Cow::Owned(format!(
                        "ERR Unexpected flag in script shebang: {other}"
                    )))
                }
            }
        }
    }
    // The shebang is compiled as an empty line, keeping line numbers.
    Ok((&body[end..], no_writes))
}

/// The compiled script of `sha` and its `no-writes` flag, compiling and caching `body` when
/// given.
fn script_function(
    engine: &mut Engine,
    sha: &str,
    body: Option<&[u8]>,
) -> Result<(mlua::Lua, (Function, bool)), CmdError> {
    let lua = match engine.eval_lua.take() {
        Some(l) => l,
        None => new_state()?,
    };
    let found = engine.scripts.get(sha).cloned();
    let result = match (found, body) {
        (Some(f), _) => Ok(f),
        (None, Some(body)) => match shebang(body) {
            Err(e) => Err(e),
            Ok((code, no_writes)) => match lua::compile(&lua, code, lua::SCRIPT_CHUNK) {
                Ok(f) => {
                    engine
                        .scripts
                        .insert(sha.to_string(), (f.clone(), no_writes));
                    Ok((f, no_writes))
                }
                Err(e) => Err(Cow::Owned(format!(
                    "ERR Error compiling script (new function): {e}"
                ))),
            },
        },
        (None, None) => Err(Cow::Borrowed(NOSCRIPT_ERR)),
    };
    match result {
        Ok(f) => Ok((lua, f)),
        Err(e) => {
            engine.eval_lua = Some(lua);
            Err(e)
        }
    }
}

fn eval(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (keys, argv) = keys_and_args(args, ERR_NOT_INTEGER)?;
    let sha = sha1_hex(&args[1]);
    let (state, (func, no_writes)) = script_function(&mut ctx.db.scripting, &sha, Some(&args[1]))?;
    let read_only = no_writes || args[0].len() > 4;
    run_script(ctx, &state, &func, keys, argv, &sha, read_only, true);
    ctx.db.scripting.eval_lua = Some(state);
    Ok(())
}

fn evalsha(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (keys, argv) = keys_and_args(args, ERR_NOT_INTEGER)?;
    let sha = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    if sha.len() != 40 {
        return Err(Cow::Borrowed(NOSCRIPT_ERR));
    }
    let (state, (func, no_writes)) = script_function(&mut ctx.db.scripting, &sha, None)?;
    let read_only = no_writes || args[0].len() > 7;
    run_script(ctx, &state, &func, keys, argv, &sha, read_only, true);
    ctx.db.scripting.eval_lua = Some(state);
    Ok(())
}

/// Runs a script as one effect (or as part of the open transaction's effect).
#[allow(clippy::too_many_arguments)]
fn run_script(
    ctx: &mut Ctx<'_>,
    state: &mlua::Lua,
    func: &Function,
    keys: &[Bytes],
    argv: &[Bytes],
    name: &str,
    read_only: bool,
    globals: bool,
) {
    let opts = lua::RunOptions {
        name,
        read_only,
        time_limit: time_limit(ctx),
        globals,
    };
    let own_batch = !ctx.db.ks.in_batch();
    if own_batch {
        ctx.db.ks.begin_batch();
    }
    lua::run(ctx, state, func, keys, argv, &opts);
    if own_batch {
        ctx.db.ks.end_batch();
    }
}

fn fcall(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (keys, argv) = keys_and_args(args, "ERR Bad number of keys provided")?;
    let name = String::from_utf8_lossy(&args[1]).into_owned();
    let read_only_call = args[0].len() > 5;
    let found = ctx
        .db
        .scripting
        .libraries
        .values()
        .find_map(|l| {
            l.functions
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&name))
                .map(|(_, f)| f)
        })
        .map(|f| (f.callback.clone(), f.flags.iter().any(|x| x == "no-writes")));
    let Some((callback, no_writes)) = found else {
        return Err(Cow::Borrowed("ERR Function not found"));
    };
    if read_only_call && !no_writes {
        return Err(Cow::Borrowed(
            "ERR Can not execute a script with write flag using *_ro command.",
        ));
    }
    let Some(state) = ctx.db.scripting.fn_lua.take() else {
        return Err(Cow::Borrowed("ERR Function not found"));
    };
    run_script(ctx, &state, &callback, keys, argv, &name, no_writes, false);
    ctx.db.scripting.fn_lua = Some(state);
    Ok(())
}

fn flush_mode(args: &[Bytes], what: &'static str) -> Result<(), CmdError> {
    match args.get(2) {
        None => Ok(()),
        Some(a) if args.len() == 3 && (is(a, "sync") || is(a, "async")) => Ok(()),
        _ => Err(Cow::Borrowed(what)),
    }
}

const SCRIPT_HELP: &[&str] = &[
    "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DEBUG (YES|SYNC|NO)",
    "    Set the debug mode for subsequent scripts executed.",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
    "HELP",
    "    Prints this help.",
];

fn unknown_subcommand(args: &[Bytes], family: &str) -> CmdError {
    Cow::Owned(format!(
        "ERR unknown subcommand '{}'. Try {family} HELP.",
        String::from_utf8_lossy(&args[1])
    ))
}

fn script(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let sub = lower(&args[1]);
    match (sub.as_str(), args.len()) {
        ("help", 2) => ctx.reply_help(SCRIPT_HELP),
        ("load", 3) => {
            let sha = sha1_hex(&args[2]);
            let (state, _) = script_function(&mut ctx.db.scripting, &sha, Some(&args[2]))?;
            ctx.db.scripting.eval_lua = Some(state);
            ctx.out.bulk(sha.as_bytes());
        }
        ("exists", n) if n >= 3 => {
            ctx.out.array(n - 2);
            for sha in &args[2..] {
                let sha = String::from_utf8_lossy(sha).to_ascii_lowercase();
                let known = ctx.db.scripting.scripts.contains_key(&sha);
                ctx.out.int(i64::from(known));
            }
        }
        ("flush", 2 | 3) => {
            flush_mode(args, "ERR SCRIPT FLUSH only support SYNC|ASYNC option")?;
            ctx.db.scripting.scripts.clear();
            ctx.db.scripting.eval_lua = None;
            ctx.out.simple("OK");
        }
        ("kill", 2) => return Err(Cow::Borrowed(NOTBUSY)),
        ("help" | "load" | "exists" | "flush" | "kill" | "debug", _) => {
            return Err(arity_error(&format!("script|{sub}")))
        }
        _ => return Err(unknown_subcommand(args, "SCRIPT")),
    }
    Ok(())
}
