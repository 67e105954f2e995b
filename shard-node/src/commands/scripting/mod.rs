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
pub mod libs;
pub mod lua;

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

fn help(ctx: &mut Ctx<'_>, lines: &[&str]) {
    ctx.out.array(lines.len());
    for l in lines {
        ctx.out.simple(l);
    }
}

fn unknown_subcommand(args: &[Bytes], family: &str) -> CmdError {
    Cow::Owned(format!(
        "ERR unknown subcommand '{}'. Try {family} HELP.",
        String::from_utf8_lossy(&args[1])
    ))
}

fn script(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let sub = lower(&args[1]);
    match (sub.as_str(), args.len()) {
        ("help", 2) => help(ctx, SCRIPT_HELP),
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

const FUNCTION_HELP: &[&str] = &[
    "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Library description",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function.",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the libraries.",
    "    * SYNC: Synchronously flush the libraries.",
    "DUMP",
    "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
    "    control how to handle existing libraries (default APPEND):",
    "    * FLUSH: delete all existing libraries.",
    "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
    "      libraries with the new libraries (notice that even on this option there is a chance of failure",
    "      in case of functions name collision with another library).",
    "HELP",
    "    Prints this help.",
];

fn function(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let sub = lower(&args[1]);
    match (sub.as_str(), args.len()) {
        ("help", 2) => help(ctx, FUNCTION_HELP),
        ("load", 3 | 4) => {
            let replace = match args.len() {
                4 if is(&args[2], "replace") => true,
                4 => {
                    return Err(Cow::Owned(format!(
                        "ERR Unknown option given: {}",
                        String::from_utf8_lossy(&args[2])
                    )))
                }
                _ => false,
            };
            let name = function_load(ctx, &args[args.len() - 1], replace)?;
            ctx.out.bulk(name.as_bytes());
        }
        ("delete", 3) => {
            let name = String::from_utf8_lossy(&args[2]).into_owned();
            if ctx.db.scripting.libraries.remove(&name).is_none() {
                return Err(Cow::Borrowed("ERR Library not found"));
            }
            ctx.out.simple("OK");
        }
        ("flush", 2 | 3) => {
            flush_mode(args, "ERR FUNCTION FLUSH only supports SYNC|ASYNC option")?;
            ctx.db.scripting.libraries.clear();
            ctx.db.scripting.fn_lua = None;
            ctx.out.simple("OK");
        }
        ("kill", 2) => return Err(Cow::Borrowed(NOTBUSY)),
        ("stats", 2) => {
            let libs = ctx.db.scripting.libraries.len();
            let funcs: usize = ctx
                .db
                .scripting
                .libraries
                .values()
                .map(|l| l.functions.len())
                .sum();
            ctx.out.map(2);
            ctx.out.bulk(b"running_script");
            ctx.out.null();
            ctx.out.bulk(b"engines");
            ctx.out.map(1);
            ctx.out.bulk(b"LUA");
            ctx.out.map(2);
            ctx.out.bulk(b"libraries_count");
            ctx.out.int(libs as i64);
            ctx.out.bulk(b"functions_count");
            ctx.out.int(funcs as i64);
        }
        ("list", _) => function_list(ctx, args)?,
        ("dump", 2) | ("restore", 3 | 4) => {
            return Err(Cow::Owned(format!(
            "ERR FUNCTION {} is not supported by this server: load libraries with FUNCTION LOAD",
            sub.to_ascii_uppercase()
        )))
        }
        ("help" | "load" | "delete" | "flush" | "kill" | "stats" | "dump" | "restore", _) => {
            return Err(arity_error(&format!("function|{sub}")))
        }
        _ => return Err(unknown_subcommand(args, "FUNCTION")),
    }
    Ok(())
}

fn function_list(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let mut pattern: Option<&Bytes> = None;
    let mut with_code = false;
    let mut i = 2;
    while i < args.len() {
        if is(&args[i], "withcode") && !with_code {
            with_code = true;
        } else if is(&args[i], "libraryname") && pattern.is_none() {
            let Some(p) = args.get(i + 1) else {
                return Err(Cow::Borrowed("ERR library name argument was not given"));
            };
            pattern = Some(p);
            i += 1;
        } else {
            return Err(Cow::Owned(format!(
                "ERR Unknown argument {}",
                String::from_utf8_lossy(&args[i])
            )));
        }
        i += 1;
    }
    let libs: Vec<(&String, &Library)> = ctx
        .db
        .scripting
        .libraries
        .iter()
        .filter(|(n, _)| pattern.is_none_or(|p| crate::glob::glob_match(p, n.as_bytes())))
        .collect();
    ctx.out.array(libs.len());
    for (name, lib) in libs {
        ctx.out.map(if with_code { 4 } else { 3 });
        ctx.out.bulk(b"library_name");
        ctx.out.bulk(name.as_bytes());
        ctx.out.bulk(b"engine");
        ctx.out.bulk(b"LUA");
        ctx.out.bulk(b"functions");
        ctx.out.array(lib.functions.len());
        for (fname, f) in &lib.functions {
            ctx.out.map(3);
            ctx.out.bulk(b"name");
            ctx.out.bulk(fname.as_bytes());
            ctx.out.bulk(b"description");
            ctx.out
                .bulk_or_null(f.description.as_deref().map(str::as_bytes));
            ctx.out.bulk(b"flags");
            ctx.out.set(f.flags.len());
            for flag in &f.flags {
                ctx.out.simple(flag);
            }
        }
        if with_code {
            ctx.out.bulk(b"library_code");
            ctx.out.bulk(&lib.code);
        }
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Reads `#!lua name=<lib>` at the top of a library.
fn library_name(code: &[u8]) -> Result<String, CmdError> {
    if !code.starts_with(b"#!") {
        return Err(Cow::Borrowed("ERR Missing library metadata"));
    }
    let Some(end) = code.iter().position(|b| *b == b'\n') else {
        return Err(Cow::Borrowed("ERR Invalid library metadata"));
    };
    let line = String::from_utf8_lossy(&code[2..end]).into_owned();
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let engine = parts.next().unwrap_or("");
    if !engine.eq_ignore_ascii_case("lua") {
        return Err(Cow::Owned(format!("ERR Engine '{engine}' not found")));
    }
    let mut name = None;
    for part in parts {
        match part.strip_prefix("name=") {
            Some(n) => name = Some(n.to_string()),
            None => {
                return Err(Cow::Owned(format!(
                    "ERR Invalid metadata value given: {part}"
                )))
            }
        }
    }
    name.ok_or(Cow::Borrowed("ERR Library name was not given"))
}

/// `FUNCTION LOAD`: compiles and runs the library code, which registers its functions.
fn function_load(ctx: &mut Ctx<'_>, code: &Bytes, replace: bool) -> Result<String, CmdError> {
    let name = library_name(code)?;
    if !valid_name(&name) {
        return Err(Cow::Borrowed("ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long"));
    }
    let engine = &mut ctx.db.scripting;
    if engine.libraries.contains_key(&name) && !replace {
        return Err(Cow::Owned(format!("ERR Library '{name}' already exists")));
    }
    let state = match engine.fn_lua.take() {
        Some(s) => s,
        None => new_state()?,
    };
    let result = register_library(&state, code);
    engine.fn_lua = Some(state);
    let functions = result?;
    for fname in functions.keys() {
        let clash = engine.libraries.iter().any(|(lname, l)| {
            *lname != name && l.functions.keys().any(|f| f.eq_ignore_ascii_case(fname))
        });
        if clash {
            return Err(Cow::Owned(format!("ERR Function {fname} already exists")));
        }
    }
    engine.libraries.insert(
        name.clone(),
        Library {
            code: code.clone(),
            functions,
        },
    );
    Ok(name)
}

/// Runs a library's code with the loading API (`redis.register_function`, `redis.log`) and
/// returns its functions.
fn register_library(
    state: &mlua::Lua,
    code: &[u8],
) -> Result<BTreeMap<String, FunctionDef>, CmdError> {
    // The metadata line is not Lua: it is compiled as an empty line, keeping line numbers.
    let body = code
        .iter()
        .position(|b| *b == b'\n')
        .map_or(&code[..0], |at| &code[at..]);
    let chunk = lua::compile(state, body, lua::FUNCTION_CHUNK)
        .map_err(|e| Cow::Owned(format!("ERR Error compiling function: {e}")))?;
    let registering = |e: String| Cow::Owned(format!("ERR Error registering functions: {e}"));
    let lua_err = |e: mlua::Error| registering(format!("ERR {e}"));
    let registered: std::cell::RefCell<Result<BTreeMap<String, FunctionDef>, String>> =
        std::cell::RefCell::new(Ok(BTreeMap::new()));
    let globals = state.globals();
    let runtime_redis = lua::redis_table(state).map_err(lua_err)?;
    let outcome: mlua::Result<Option<String>> = state.scope(|scope| {
        let register = scope.create_function(|lua, args: mlua::MultiValue| {
            let def = parse_registration(&args);
            let mut all = registered.borrow_mut();
            if let Ok(map) = all.as_mut() {
                match def {
                    Ok((name, def)) => {
                        if let std::collections::btree_map::Entry::Vacant(slot) = map.entry(name) {
                            slot.insert(def);
                        } else {
                            *all = Err("ERR Function already exists in the library".into());
                        }
                    }
                    Err(e) => *all = Err(e),
                }
            }
            let failed = all.as_ref().err().cloned();
            match failed {
                Some(e) => Err(lua::script_error(lua, &e)),
                None => Ok(()),
            }
        })?;
        let load_redis = state.create_table()?;
        load_redis.raw_set("register_function", register)?;
        load_redis.raw_set("log", runtime_redis.get::<mlua::Value>("log")?)?;
        load_redis.raw_set("setresp", runtime_redis.get::<mlua::Value>("setresp")?)?;
        for c in ["LOG_DEBUG", "LOG_VERBOSE", "LOG_NOTICE", "LOG_WARNING", "REDIS_VERSION", "REDIS_VERSION_NUM"] {
            load_redis.raw_set(c, runtime_redis.get::<mlua::Value>(c)?)?;
        }
        let guard: mlua::Table = state
            .load(
                "local t = ... return setmetatable({}, {__index = function(_, k) local v = rawget(t, k) if v == nil then error(\"Script attempted to access nonexistent global variable '\" .. tostring(k) .. \"'\", 2) end return v end, __newindex = function() error('Attempt to modify a readonly table', 2) end})",
            )
            .set_name("=loader")
            .call(load_redis)?;
        globals.raw_set("redis", guard)?;
        let handler = state.create_function(|lua, err: mlua::Value| {
            Ok(match err {
                mlua::Value::Table(t) => t.raw_get::<Option<String>>("err")?.unwrap_or_default(),
                mlua::Value::Error(e) => lua::describe(&e).0,
                other => format!(
                    "ERR {}",
                    lua.coerce_string(other)?
                        .map(|s| s.to_string_lossy())
                        .unwrap_or_default()
                ),
            })
        })?;
        let xpcall: Function = globals.raw_get("xpcall")?;
        let (ok, err): (bool, mlua::Value) = xpcall.call((chunk, handler))?;
        globals.raw_set("redis", runtime_redis.clone())?;
        Ok(match (ok, err) {
            (true, _) => None,
            (false, mlua::Value::String(s)) => Some(s.to_string_lossy()),
            (false, mlua::Value::Error(e)) => Some(lua::describe(&e).0),
            (false, _) => Some("ERR execution failure".into()),
        })
    });
    // The runtime `redis` table is back whatever happened.
    let _ = globals.raw_set("redis", runtime_redis);
    if let Some(e) = outcome.map_err(lua_err)? {
        return Err(registering(e));
    }
    let functions = registered.into_inner().map_err(registering)?;
    if functions.is_empty() {
        return Err(Cow::Borrowed("ERR No functions registered"));
    }
    Ok(functions)
}

const NAME_ERR: &str = "ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long";

/// The arguments of `redis.register_function`: `(name, callback)` or a table of named
/// arguments `{function_name=, callback=, flags=, description=}`.
fn parse_registration(args: &mlua::MultiValue) -> Result<(String, FunctionDef), String> {
    use mlua::Value;
    let (name, callback, flags, description) = match args.len() {
        1 => {
            let Some(Value::Table(t)) = args.front() else {
                return Err("ERR calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).".into());
            };
            let mut name = None;
            let mut callback = None;
            let mut flags = Vec::new();
            let mut description = None;
            for pair in t.clone().pairs::<Value, Value>() {
                let (k, v) = pair.map_err(|e| format!("ERR {e}"))?;
                let Value::String(k) = k else {
                    return Err(
                        "ERR named argument key given to redis.register_function is not a string"
                            .into(),
                    );
                };
                match (k.to_string_lossy().as_str(), v) {
                    ("function_name", Value::String(s)) => name = Some(s.to_string_lossy()),
                    ("function_name", _) => {
                        return Err("ERR function_name argument given to redis.register_function must be a string".into())
                    }
                    ("callback", Value::Function(f)) => callback = Some(f),
                    ("callback", _) => {
                        return Err("ERR callback argument given to redis.register_function must be a function".into())
                    }
                    ("description", Value::String(s)) => description = Some(s.to_string_lossy()),
                    ("description", _) => {
                        return Err("ERR description argument given to redis.register_function must be a string".into())
                    }
                    ("flags", Value::Table(f)) => {
                        for flag in f.sequence_values::<Value>() {
                            let flag = match flag {
                                Ok(Value::String(s)) => s.to_string_lossy(),
                                _ => return Err("ERR unknown flag given".into()),
                            };
                            if !matches!(
                                flag.as_str(),
                                "no-writes" | "allow-oom" | "allow-stale" | "no-cluster" | "allow-cross-slot-keys"
                            ) {
                                return Err("ERR unknown flag given".into());
                            }
                            flags.push(flag);
                        }
                    }
                    ("flags", _) => {
                        return Err("ERR flags argument to redis.register_function must be a table representing function flags".into())
                    }
                    (other, _) => {
                        return Err(format!(
                            "ERR unknown argument given to redis.register_function: {other}"
                        ))
                    }
                }
            }
            let name =
                name.ok_or("ERR redis.register_function must get a function name argument")?;
            let callback =
                callback.ok_or("ERR redis.register_function must get a callback argument")?;
            (name, callback, flags, description)
        }
        2 => {
            let (Some(Value::String(n)), Some(Value::Function(f))) = (args.front(), args.get(1))
            else {
                return Err("ERR wrong arguments given to redis.register_function".into());
            };
            (n.to_string_lossy(), f.clone(), Vec::new(), None)
        }
        _ => return Err("ERR wrong number of arguments to redis.register_function".into()),
    };
    if !valid_name(&name) {
        return Err(NAME_ERR.into());
    }
    Ok((
        name,
        FunctionDef {
            callback,
            flags,
            description,
        },
    ))
}
