//! The Lua interpreter behind `EVAL` and `FCALL`: a sandboxed Lua 5.1 state per use (one for
//! `EVAL` scripts, one for function libraries), the `redis` library, and the running of one
//! script with its commands, limits and error texts.
//!
//! Contract:
//! - A state has only the `base`, `table`, `string` and `math` libraries, without `print`,
//!   `dofile`, `loadfile`, `setfenv`, `getfenv`, `module`, `require`, `newproxy`, `debug` and
//!   `coroutine` (the time limit's hook does not reach code running in a coroutine);
//!   scripts run in an environment where reading a missing global is the error `Script
//!   attempted to access nonexistent global variable '<name>'` and any global write (and any
//!   write into the library tables) is `Attempt to modify a readonly table`, as in Redis 7.0.
//! - [`run`] runs one compiled script or function with its `KEYS` / `ARGV` (or `keys, args`
//!   parameters); `redis.call` / `redis.pcall` run commands through the same checks as a
//!   client's command where they apply (unknown command, arity, `noscript`, ACL, cluster slot,
//!   replica / memory / persistence admission, writes in read-only scripts) and through
//!   [`crate::commands::run`]; the reply bytes are read back into Lua values.
//! - A script that runs longer than its time limit is stopped with an error by an instruction
//!   count hook; the state's memory is limited by [`mlua::Lua::set_memory_limit`]. Neither can
//!   panic: every Lua failure becomes an error reply with Redis's text
//!   (`<error> script: <name>, on @user_script:<line>.`).

use super::convert::{self, lua_error_text, parse_reply, reply_to_lua, Reply};
use crate::commands::{self as commands, Ctx};
use crate::resp::{Protocol, ReplyWriter};
use bytes::{Bytes, BytesMut};
use mlua::{Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};
use std::cell::Cell;
use std::time::{Duration, Instant};

/// The chunk name of `EVAL` scripts (errors say `user_script:<line>`).
pub const SCRIPT_CHUNK: &str = "@user_script";
/// The chunk name of function libraries.
pub const FUNCTION_CHUNK: &str = "@user_function";
/// How many Lua instructions run between two checks of the time limit.
const HOOK_EVERY: u32 = 10_000;

/// Registry names of the values a state keeps for itself.
const ENV: &str = "aadb.env";
const REDIS_RAW: &str = "aadb.redis_raw";
const RUNNER: &str = "aadb.runner";
const HANDLER: &str = "aadb.handler";
const REDIS: &str = "aadb.redis";

/// Commands Redis 7.0 flags `noscript` (by name or `name|subcommand`) that the command table
/// does not flag itself.
const NOSCRIPT: &[&str] = &[
    "acl",
    "auth",
    "bgrewriteaof",
    "bgsave",
    "blmove",
    "blpop",
    "brpop",
    "brpoplpush",
    "bzpopmax",
    "bzpopmin",
    "client",
    "cluster|reset",
    "config|get",
    "config|resetstat",
    "config|rewrite",
    "config|set",
    "debug",
    "discard",
    "eval",
    "eval_ro",
    "evalsha",
    "evalsha_ro",
    "exec",
    "failover",
    "fcall",
    "fcall_ro",
    "function",
    "hello",
    "latency",
    "module",
    "monitor",
    "multi",
    "psubscribe",
    "psync",
    "punsubscribe",
    "quit",
    "replconf",
    "replicaof",
    "reset",
    "role",
    "save",
    "script",
    "shutdown",
    "slaveof",
    "ssubscribe",
    "subscribe",
    "sunsubscribe",
    "sync",
    "unsubscribe",
    "unwatch",
    "wait",
    "watch",
];

/// The sandbox, run once in a new state with the real globals table as its argument. It returns
/// the environment scripts run in and the `redis` table.
const SETUP: &str = r#"
local G, redis, describe = ...
local rawget, rawset, error, tostring, setmetatable, setfenv = rawget, rawset, error, tostring, setmetatable, setfenv
local function readonly(t)
  return setmetatable({}, {
    __index = t,
    __newindex = function() error("Attempt to modify a readonly table", 2) end,
    __metatable = false,
  })
end
local env = setmetatable({}, {
  __index = function(_, k)
    local v = rawget(G, k)
    if v == nil then
      error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
    end
    return v
  end,
  __newindex = function() error("Attempt to modify a readonly table", 2) end,
  __metatable = false,
})
redis.set_repl = function() end
redis.replicate_commands = function() return true end
redis.breakpoint = function() return false end
redis.debug = function() end
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3
redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA, redis.REPL_ALL = 0, 1, 2, 2, 3
redis.REDIS_VERSION, redis.REDIS_VERSION_NUM = "7.0.15", 0x0007000f
local real_pcall, unpack, maxn, type = pcall, unpack, table.maxn, type
-- An error raised from Rust (redis.call...) is caught as its error text, as in Redis.
rawset(G, "pcall", function(...)
  local r = {real_pcall(...)}
  if not r[1] and type(r[2]) == "userdata" then r[2] = describe(r[2]) end
  return unpack(r, 1, maxn(r))
end)
local real_loadstring, real_load = loadstring, load
rawset(G, "loadstring", function(...)
  local f, e = real_loadstring(...)
  if f then setfenv(f, env) end
  return f, e
end)
rawset(G, "load", function(...)
  local f, e = real_load(...)
  if f then setfenv(f, env) end
  return f, e
end)
-- coroutine is left out: the time limit cannot reach code running in a coroutine.
for _, name in ipairs({"print", "dofile", "loadfile", "setfenv", "getfenv", "module", "require", "newproxy", "debug", "coroutine"}) do
  rawset(G, name, nil)
end
local ro_redis = readonly(redis)
rawset(G, "redis", ro_redis)
for _, name in ipairs({"string", "math", "table", "bit", "cmsgpack", "cjson"}) do
  rawset(G, name, readonly(rawget(G, name)))
end
rawset(G, "_G", env)
return env, ro_redis
"#;

/// Runs a script function with its error handler and two arguments.
const RUNNER_CODE: &str = r#"
local f, h, k, a = ...
return xpcall(function() return f(k, a) end, h)
"#;

/// An error raised from Rust inside a script (`redis.call`, the time limit...), with the
/// script line it was raised at. Such errors skip Lua error handlers, so they carry their
/// location themselves.
#[derive(Debug, thiserror::Error)]
#[error("{text}")]
pub struct ScriptError {
    /// The Redis error text (`ERR ...`).
    pub text: String,
    /// (chunk name, line) of the script frame that raised it.
    pub at: Option<(String, i32)>,
}

/// The error of a run stopped by the time limit, once it is.
type Killed = std::sync::Arc<parking_lot::Mutex<Option<ScriptError>>>;

/// The innermost script frame: (chunk name, current line).
pub(super) fn location(lua: &Lua) -> Option<(String, i32)> {
    for level in 0..256 {
        let frame = lua.inspect_stack(level)?;
        let source = frame.source();
        if let Some(src) = source.source.as_deref() {
            if src == SCRIPT_CHUNK || src == FUNCTION_CHUNK {
                return Some((src.to_string(), frame.curr_line()));
            }
        }
    }
    None
}

/// A [`ScriptError`] located at the calling script line.
pub fn script_error(lua: &Lua, text: &str) -> mlua::Error {
    mlua::Error::external(ScriptError {
        text: text.to_string(),
        at: location(lua),
    })
}

/// A [`ScriptError`] raised by a hook, located at the running line when it is the script's.
fn hook_error(lua: &Lua, debug: &mlua::Debug, text: &str) -> mlua::Error {
    let source = debug.source();
    let here = source
        .source
        .as_deref()
        .filter(|s| *s == SCRIPT_CHUNK || *s == FUNCTION_CHUNK)
        .map(|s| (s.to_string(), debug.curr_line()));
    mlua::Error::external(ScriptError {
        text: text.to_string(),
        at: here.or_else(|| location(lua)),
    })
}

/// The Redis error text and location of an error raised from Rust.
pub fn describe(e: &mlua::Error) -> (String, Option<(String, i32)>) {
    match e {
        mlua::Error::ExternalError(inner) => match inner.downcast_ref::<ScriptError>() {
            Some(se) => (se.text.clone(), se.at.clone()),
            None => (format!("ERR {inner}"), None),
        },
        mlua::Error::CallbackError { cause, .. } => describe(cause),
        mlua::Error::RuntimeError(text) => (text.clone(), None),
        mlua::Error::MemoryError(_) => ("ERR Script used more memory than allowed".into(), None),
        other => (format!("ERR {other}"), None),
    }
}

/// A new sandboxed state with a memory limit.
pub fn new_state(memory_limit: usize) -> mlua::Result<Lua> {
    let lua = Lua::new_with(
        StdLib::TABLE | StdLib::STRING | StdLib::MATH,
        LuaOptions::default(),
    )?;
    let redis = lua.create_table()?;
    redis.raw_set(
        "error_reply",
        lua.create_function(|lua, v: Value| {
            let Value::String(s) = v else {
                return single_error(lua, "ERR wrong number or type of arguments");
            };
            let text = s.to_string_lossy();
            let dashed = if text.starts_with('-') {
                text
            } else {
                format!("-{text}")
            };
            single_error(lua, &lua_error_text(&dashed))
        })?,
    )?;
    redis.raw_set(
        "status_reply",
        lua.create_function(|lua, v: Value| {
            let t = lua.create_table()?;
            match v {
                Value::String(s) => t.raw_set("ok", s)?,
                _ => t.raw_set("err", "ERR wrong number or type of arguments")?,
            }
            Ok(t)
        })?,
    )?;
    redis.raw_set(
        "sha1hex",
        lua.create_function(|lua, args: MultiValue| {
            if args.len() != 1 {
                return Err(script_error(lua, "ERR wrong number of arguments"));
            }
            let text = lua
                .coerce_string(args[0].clone())?
                .map(|s| s.as_bytes().to_vec())
                .unwrap_or_default();
            Ok(super::sha1_hex(&text))
        })?,
    )?;
    redis.raw_set(
        "log",
        lua.create_function(|lua, args: MultiValue| {
            if args.len() < 2 {
                return Err(script_error(
                    lua,
                    "ERR redis.log() requires two arguments or more.",
                ));
            }
            let level = match &args[0] {
                Value::Integer(n) => *n,
                Value::Number(n) => *n as i64,
                _ => {
                    return Err(script_error(
                        lua,
                        "ERR First argument must be a number (log level).",
                    ))
                }
            };
            let mut text = Vec::new();
            for v in args.iter().skip(1) {
                if let Some(s) = lua.coerce_string(v.clone())? {
                    if !text.is_empty() {
                        text.push(b' ');
                    }
                    text.extend_from_slice(&s.as_bytes());
                }
            }
            let text = String::from_utf8_lossy(&text);
            match level {
                0 => tracing::debug!(target: "script", "{text}"),
                1 | 2 => tracing::info!(target: "script", "{text}"),
                3 => tracing::warn!(target: "script", "{text}"),
                _ => return Err(script_error(lua, "ERR Invalid debug level.")),
            }
            Ok(())
        })?,
    )?;
    super::libs::install(&lua)?;
    let setup: Function = lua.load(SETUP).set_name("=setup").into_function()?;
    let describe_error = lua.create_function(|lua, v: Value| {
        Ok(match v {
            Value::Error(e) => describe(&e).0,
            other => lua
                .coerce_string(other)?
                .map(|s| s.to_string_lossy())
                .unwrap_or_default(),
        })
    })?;
    let (env, ro_redis): (Table, Table) =
        setup.call((lua.globals(), redis.clone(), describe_error))?;
    lua.set_named_registry_value(ENV, env)?;
    lua.set_named_registry_value(REDIS, ro_redis)?;
    lua.set_named_registry_value(REDIS_RAW, redis)?;
    let runner = lua.load(RUNNER_CODE).set_name("=runner").into_function()?;
    lua.set_named_registry_value(RUNNER, runner)?;
    lua.set_named_registry_value(HANDLER, lua.create_function(error_handler)?)?;
    lua.set_memory_limit(memory_limit)?;
    Ok(lua)
}

fn single_error(lua: &Lua, text: &str) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("err", text)?;
    Ok(t)
}

/// The error handler of every run (`__redis__err__handler` of Redis): turns any error into a
/// table `{err=..., source=..., line=...}` locating the script's line.
fn error_handler(lua: &Lua, err: Value) -> mlua::Result<Table> {
    let table = match err {
        Value::Table(t) => t,
        Value::String(s) => single_error(lua, &format!("ERR {}", s.to_string_lossy()))?,
        Value::Error(e) => single_error(lua, &describe(&e).0)?,
        other => {
            let text = lua
                .coerce_string(other)?
                .map(|s| s.to_string_lossy())
                .unwrap_or_else(|| "execution failure".into());
            single_error(lua, &format!("ERR {text}"))?
        }
    };
    for level in 0..256 {
        let Some(frame) = lua.inspect_stack(level) else {
            break;
        };
        let source = frame.source();
        let Some(src) = source.source.as_deref() else {
            continue;
        };
        if src == SCRIPT_CHUNK || src == FUNCTION_CHUNK {
            table.raw_set("source", src.to_string())?;
            table.raw_set("line", frame.curr_line())?;
            break;
        }
    }
    Ok(table)
}

/// Compiles a script or library body with `chunk` as its name, in the sandbox environment.
pub fn compile(lua: &Lua, body: &[u8], chunk: &str) -> Result<Function, String> {
    let env: Table = lua
        .named_registry_value(ENV)
        .map_err(|e| format!("ERR {e}"))?;
    lua.load(body)
        .set_name(chunk)
        .set_environment(env)
        .into_function()
        .map_err(|e| match e {
            mlua::Error::SyntaxError { message, .. } => message,
            mlua::Error::MemoryError(_) => "not enough memory".into(),
            other => other.to_string(),
        })
}

/// How one run is done.
pub struct RunOptions<'n> {
    /// The script's SHA1 or the function's name, for error texts.
    pub name: &'n str,
    /// Refuse commands that write (`EVAL_RO`, `FCALL_RO`, `no-writes` functions).
    pub read_only: bool,
    /// Time after which the script is stopped.
    pub time_limit: Duration,
    /// `EVAL` scripts see `KEYS` and `ARGV` as globals; functions get them as parameters.
    pub globals: bool,
}

/// What the interpreter left on the wire-independent side of a run: the script's result or
/// its error table, already converted to reply bytes in the caller's protocol.
pub fn run(
    ctx: &mut Ctx<'_>,
    lua: &Lua,
    func: &Function,
    keys: &[Bytes],
    argv: &[Bytes],
    opts: &RunOptions<'_>,
) {
    let mut out = BytesMut::new();
    let client_proto = ctx.client.proto;
    let killed: Killed = Default::default();
    let outcome = run_inner(ctx, lua, func, keys, argv, opts, &killed);
    lua.remove_hook();
    // Once stopped, the script's error is the first one the time limit raised.
    let outcome = match killed.lock().take() {
        Some(e) => Ok((
            false,
            Value::Error(Box::new(mlua::Error::external(e))),
            Protocol::Resp2,
        )),
        None => outcome,
    };
    match outcome {
        Ok((ok, value, script_proto)) => {
            let mut w = ReplyWriter::new(&mut out, client_proto);
            if ok {
                convert::write_lua_value(&mut w, &value, script_proto);
            } else {
                w.error(&failure_text(&value, opts.name));
            }
        }
        Err(e) => {
            let mut w = ReplyWriter::new(&mut out, client_proto);
            w.error(&failure_text(&Value::Error(Box::new(e)), opts.name));
        }
    }
    if out.first() == Some(&b'-') {
        let text = String::from_utf8_lossy(&out[1..out.len().saturating_sub(2)]).into_owned();
        commands::reply_error(ctx.db, &mut ctx.out, &text);
    } else {
        ctx.out.raw(&out);
    }
}

/// The error reply of a failed run from its error table.
fn failure_text(value: &Value, name: &str) -> String {
    let Value::Table(t) = value else {
        return match value {
            // Errors raised from Rust (the time limit, memory) skip the Lua error handler.
            Value::Error(e) => match describe(e) {
                (text, Some((source, line))) => {
                    format!("{text} script: {name}, on {source}:{line}.")
                }
                (text, None) => format!("{text} script: {name}"),
            },
            Value::String(s) => format!("ERR Error running script {name}, {}", s.to_string_lossy()),
            _ => format!("ERR Error running script {name}, execution failure"),
        };
    };
    let msg = match t.raw_get::<Value>("err") {
        Ok(Value::String(s)) => s.to_string_lossy(),
        _ => String::new(),
    };
    let source = t.raw_get::<Option<String>>("source").ok().flatten();
    let line = t.raw_get::<Option<i64>>("line").ok().flatten();
    match (source, line) {
        (Some(source), Some(line)) => format!("{msg} script: {name}, on {source}:{line}."),
        _ => msg,
    }
}

fn string_list(lua: &Lua, items: &[Bytes]) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(items.len(), 0)?;
    for (i, item) in items.iter().enumerate() {
        t.raw_set(i + 1, lua.create_string(item)?)?;
    }
    Ok(t)
}

/// Runs the script; `(succeeded, result or error table, protocol chosen by the script)`.
fn run_inner(
    ctx: &mut Ctx<'_>,
    lua: &Lua,
    func: &Function,
    keys: &[Bytes],
    argv: &[Bytes],
    opts: &RunOptions<'_>,
    killed: &Killed,
) -> mlua::Result<(bool, Value, Protocol)> {
    let redis: Table = lua.named_registry_value(REDIS_RAW)?;
    let runner: Function = lua.named_registry_value(RUNNER)?;
    let handler: Function = lua.named_registry_value(HANDLER)?;
    let keys_t = string_list(lua, keys)?;
    let argv_t = string_list(lua, argv)?;
    if opts.globals {
        let g = lua.globals();
        g.raw_set("KEYS", keys_t.clone())?;
        g.raw_set("ARGV", argv_t.clone())?;
    }
    let script_proto = Cell::new(Protocol::Resp2);
    let start = Instant::now();
    let limit = opts.time_limit;
    if !limit.is_zero() {
        let killed = killed.clone();
        lua.set_hook(
            HookTriggers::new().every_nth_instruction(HOOK_EVERY),
            move |lua, debug| {
                if start.elapsed() <= limit {
                    return Ok(VmState::Continue);
                }
                let text = format!(
                    "ERR Script killed after running longer than busy-reply-threshold ({} ms)",
                    limit.as_millis()
                );
                // From now on every instruction fails, so the error also escapes the
                // script's own `pcall`s.
                let again = text.clone();
                lua.set_hook(
                    HookTriggers::new().every_nth_instruction(1),
                    move |lua, debug| Err(hook_error(lua, &debug, &again)),
                );
                let first = hook_error(lua, &debug, &text);
                if let mlua::Error::ExternalError(e) = &first {
                    if let Some(se) = e.downcast_ref::<ScriptError>() {
                        let mut slot = killed.lock();
                        if slot.is_none() {
                            *slot = Some(ScriptError {
                                text: se.text.clone(),
                                at: se.at.clone(),
                            });
                        }
                    }
                }
                Err(first)
            },
        );
    }
    let read_only = opts.read_only;
    let now_ms = ctx.now_ms;
    let db = &mut *ctx.db;
    let client = &mut *ctx.client;
    let commands = std::cell::RefCell::new((db, client));
    let (ok, value) = lua.scope(|scope| {
        let call = scope.create_function(|lua, args: MultiValue| {
            let mut guard = commands
                .try_borrow_mut()
                .map_err(|_| script_error(lua, "ERR redis.call is not reentrant"))?;
            let (db, client) = &mut *guard;
            match call_command(lua, db, client, args, read_only, &script_proto, now_ms)? {
                (reply, false) => Ok(reply),
                (Value::Table(t), true) => {
                    let text = t.raw_get::<Option<String>>("err")?.unwrap_or_default();
                    Err(script_error(lua, &text))
                }
                (other, true) => Ok(other),
            }
        })?;
        let pcall = scope.create_function(|lua, args: MultiValue| {
            let mut guard = commands
                .try_borrow_mut()
                .map_err(|_| script_error(lua, "ERR redis.pcall is not reentrant"))?;
            let (db, client) = &mut *guard;
            let (reply, _) = call_command(lua, db, client, args, read_only, &script_proto, now_ms)?;
            Ok(reply)
        })?;
        let setresp = scope.create_function(|lua, args: MultiValue| {
            let n = match args.front() {
                Some(Value::Integer(n)) if args.len() == 1 => *n,
                Some(Value::Number(n)) if args.len() == 1 => *n as i64,
                _ => {
                    return Err(script_error(
                        lua,
                        "ERR redis.setresp() requires one argument.",
                    ))
                }
            };
            match n {
                2 => script_proto.set(Protocol::Resp2),
                3 => script_proto.set(Protocol::Resp3),
                _ => return Err(script_error(lua, "ERR RESP version must be 2 or 3.")),
            }
            Ok(())
        })?;
        redis.raw_set("call", call)?;
        redis.raw_set("pcall", pcall)?;
        redis.raw_set("setresp", setresp)?;
        let result: (bool, Value) = runner.call((func.clone(), handler, keys_t, argv_t))?;
        for f in ["call", "pcall", "setresp"] {
            redis.raw_set(f, Value::Nil)?;
        }
        Ok(result)
    })?;
    Ok((ok, value, script_proto.get()))
}

/// `redis.call` / `redis.pcall`: runs one command; `(reply, failed)` where a failure's reply is
/// the error table.
fn call_command(
    lua: &Lua,
    db: &mut commands::Db,
    client: &mut commands::ClientState,
    args: MultiValue,
    read_only: bool,
    script_proto: &Cell<Protocol>,
    now_ms: u64,
) -> mlua::Result<(Value, bool)> {
    let fail = |text: &str| -> mlua::Result<(Value, bool)> {
        Ok((
            Value::Table(single_error(lua, &lua_error_text(text))?),
            true,
        ))
    };
    if args.is_empty() {
        return fail("Please specify at least one argument for this redis lib call");
    }
    let mut argv: Vec<Bytes> = Vec::with_capacity(args.len());
    for v in args {
        let bytes = match v {
            Value::String(s) => Bytes::copy_from_slice(&s.as_bytes()),
            Value::Integer(_) | Value::Number(_) => match lua.coerce_string(v)? {
                Some(s) => Bytes::copy_from_slice(&s.as_bytes()),
                None => return fail("Lua redis lib command arguments must be strings or integers"),
            },
            _ => return fail("Lua redis lib command arguments must be strings or integers"),
        };
        argv.push(bytes);
    }
    let Some(command) = commands::lookup(&argv[0]) else {
        return fail("Unknown Redis command called from script");
    };
    let argc = argv.len() as i32;
    if (command.arity > 0 && argc != command.arity) || (command.arity < 0 && argc < -command.arity)
    {
        return fail("Wrong number of args calling Redis command from script");
    }
    if command.flags.noscript || is_noscript(command.name, &argv) {
        return fail("This Redis command is not allowed from script");
    }
    if matches!(command.name, "xread" | "xreadgroup")
        && argv.iter().any(|a| a.eq_ignore_ascii_case(b"block"))
    {
        return fail(&format!(
            "{} command is not allowed with BLOCK option from scripts",
            command.name
        ));
    }
    if read_only && commands::writes(command, &argv) {
        return fail("Write commands are not allowed from read-only scripts.");
    }
    if let Err(denied) = crate::acl::check(&db.acl, &client.user, command, &argv) {
        return fail(match denied {
            crate::acl::Denied::Command(_) => {
                "The user executing the script can't run this command or subcommand"
            }
            crate::acl::Denied::Key => {
                "The user executing the script can't access at least one of the keys mentioned in the command arguments"
            }
            crate::acl::Denied::Channel => {
                "The user executing the script can't publish to the channel mentioned in the command"
            }
        });
    }
    if let Err(e) = commands::cluster::route(db, client, command, &argv) {
        if e.starts_with("MOVED") || e.starts_with("ASK") {
            return fail("Script attempted to access a non local key in a cluster node");
        }
        return fail(&format!("-{e}"));
    }
    if let Err(e) = commands::admission(db, command, &argv, now_ms) {
        return fail(&format!("-{e}"));
    }
    let proto = script_proto.get();
    let saved = std::mem::replace(&mut client.proto, proto);
    let mut buf = BytesMut::new();
    commands::run(
        db,
        client,
        command,
        &argv,
        ReplyWriter::new(&mut buf, proto),
        now_ms,
    );
    client.proto = saved;
    match parse_reply(&buf) {
        Ok(Reply::Error(text)) => fail(&format!("-{}", String::from_utf8_lossy(&text))),
        Ok(reply) => Ok((reply_to_lua(lua, &reply, proto)?, false)),
        Err(e) => fail(&e.to_string()),
    }
}

/// Whether Redis refuses `args` from scripts by its `noscript` flag.
fn is_noscript(name: &str, args: &[Bytes]) -> bool {
    if NOSCRIPT.contains(&name) {
        return true;
    }
    let Some(sub) = args.get(1) else {
        return false;
    };
    let full = format!(
        "{name}|{}",
        String::from_utf8_lossy(sub).to_ascii_lowercase()
    );
    NOSCRIPT.contains(&full.as_str())
}

/// The `redis` table scripts see (for the library loader, which swaps it during a load).
pub fn redis_table(lua: &Lua) -> mlua::Result<Table> {
    lua.named_registry_value(REDIS)
}
