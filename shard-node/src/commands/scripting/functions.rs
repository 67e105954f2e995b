//! FUNCTION and its libraries: FUNCTION LOAD/LIST/DELETE/FLUSH/DUMP/RESTORE/STATS, parsing a
//! library's `#!lua name=` header and the `redis.register_function` calls it makes.

use super::*;

pub(super) const FUNCTION_HELP: &[&str] = &[
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

pub(super) fn function(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let sub = lower(&args[1]);
    match (sub.as_str(), args.len()) {
        ("help", 2) => ctx.reply_help(FUNCTION_HELP),
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

pub(super) fn function_list(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
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

pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Reads `#!lua name=<lib>` at the top of a library.
pub(super) fn library_name(code: &[u8]) -> Result<String, CmdError> {
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
pub(super) fn function_load(
    ctx: &mut Ctx<'_>,
    code: &Bytes,
    replace: bool,
) -> Result<String, CmdError> {
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
pub(super) fn register_library(
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

pub(super) const NAME_ERR: &str = "ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long";

/// The arguments of `redis.register_function`: `(name, callback)` or a table of named
/// arguments `{function_name=, callback=, flags=, description=}`.
pub(super) fn parse_registration(args: &mlua::MultiValue) -> Result<(String, FunctionDef), String> {
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
