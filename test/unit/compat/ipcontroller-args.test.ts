import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  ALIASES, FLAGS, ControllerArgsError, assignPorts, helpText, optionCatalogue, parseControllerArgs,
  parsePortRange, type ControllerArgsErrorCode, type ControllerOptions,
} from "../../../src/controller/ipcontroller-args.ts";

const parse = (argv: string[], env: Record<string, string> = {}, home = "/home/u"): ControllerOptions =>
  parseControllerArgs({ argv, env, home });

function fails(argv: string[], code: ControllerArgsErrorCode, flag: string | RegExp, env: Record<string, string> = {}): ControllerArgsError {
  let caught: unknown;
  try {
    parse(argv, env);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ControllerArgsError, `expected a ControllerArgsError for ${JSON.stringify(argv)}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (typeof flag === "string") assert.equal(caught.flag, flag, caught.message);
  else assert.match(caught.flag, flag);
  // the message always names what the user typed
  assert.ok(caught.message.includes(caught.flag.split("=")[0]!), `message ${JSON.stringify(caught.message)} names ${caught.flag}`);
  return caught;
}

// ipcontroller's aliases and flags, as printed by ipyparallel 9.2.0 and 8.8.0 (identical) and
// 7.1.0 (same names): `from ipyparallel.controller import app; app.aliases, app.flags`.
const UPSTREAM_ALIASES: Record<string, string> = {
  "clean-logs": "BaseParallelApplication.clean_logs", "cluster-id": "BaseParallelApplication.cluster_id",
  config: "BaseIPythonApplication.extra_config_file", enginessh: "IPController.engine_ssh_server",
  hwm: "TaskScheduler.hwm", ident: "Session.session", ip: "IPController.ip",
  "ipython-dir": "BaseIPythonApplication.ipython_dir", keyfile: "Session.keyfile", location: "IPController.location",
  "log-level": "Application.log_level", "log-to-file": "BaseParallelApplication.log_to_file",
  "log-url": "BaseParallelApplication.log_url", ping: "HeartMonitor.period", port: "IPController.regport",
  ports: "IPController.ports", profile: "BaseIPythonApplication.profile", "profile-dir": "ProfileDir.location",
  scheme: "TaskScheduler.scheme_name", ssh: "IPController.ssh_server", transport: "IPController.transport",
  user: "Session.username", "work-dir": "BaseParallelApplication.work_dir",
};
const UPSTREAM_FLAGS = [
  "debug", "dictdb", "init", "log-to-file", "mongodb", "no-secure", "nodb", "quiet", "restore", "reuse",
  "secure", "show-config", "show-config-json", "sqlitedb", "usethreads",
];

test("defaults match ipcontroller's", () => {
  const o = parse([]);
  assert.equal(o.mode, "run");
  assert.equal(o.profile, "default");
  assert.equal(o.profileDir, undefined);
  assert.equal(o.clusterId, "");
  assert.equal(o.ip, "127.0.0.1");
  assert.equal(o.location, undefined);
  assert.equal(o.heartbeatPeriodMs, 3000);
  assert.equal(o.maxHeartbeatMisses, 10);
  assert.equal(o.taskScheme, "leastload");
  assert.equal(o.hwm, 1);
  assert.equal(o.db, "dictdb");
  assert.equal(o.reuse, false);
  assert.equal(o.enableCurve, false);
  assert.equal(o.key, undefined);
  assert.equal(o.logLevel, "info");
  assert.deepEqual(o.ports, { common: [], engine: [], client: [] });
  assert.equal(o.httpPort, undefined);
  assert.deepEqual(o.notes, []);
});

test("every upstream alias maps to the same trait here", () => {
  for (const [alias, trait] of Object.entries(UPSTREAM_ALIASES)) {
    assert.equal(ALIASES[alias], trait, `--${alias}`);
  }
});

test("every upstream alias and flag is known: accepted, or rejected with a reason, never unknown", () => {
  const sample: Record<string, string> = {
    "Application.log_level": "INFO", "HeartMonitor.period": "1000", "TaskScheduler.hwm": "1",
    "TaskScheduler.scheme_name": "lru", "IPController.regport": "10101", "IPController.ports": "10101-10102",
    "IPController.transport": "tcp", "BaseParallelApplication.clean_logs": "true", "BaseParallelApplication.log_to_file": "false",
  };
  for (const [alias, trait] of Object.entries(UPSTREAM_ALIASES)) {
    const v = sample[trait] ?? "x";
    try {
      parse([`--${alias}=${v}`]);
    } catch (err) {
      assert.ok(err instanceof ControllerArgsError);
      assert.equal(err.code, "IPP_ARGS_UNSUPPORTED", `--${alias}=${v}: ${err.message}`);
    }
  }
  for (const flag of UPSTREAM_FLAGS) {
    assert.ok(FLAGS[flag], `--${flag}`);
    try {
      parse([`--${flag}`]);
    } catch (err) {
      assert.ok(err instanceof ControllerArgsError);
      assert.equal(err.code, "IPP_ARGS_UNSUPPORTED", `--${flag}: ${err.message}`);
      assert.equal(err.flag, `--${flag}`);
    }
  }
});

test("what ipyparallel 8/9 launchers pass: --ip/--location plus IPP_CLUSTER_ID and IPP_PROFILE_DIR", () => {
  const o = parse(["--ip=*", "--location=node7.cluster"], { IPP_CLUSTER_ID: "1700000000-abcd", IPP_PROFILE_DIR: "/home/u/.ipython/profile_mpi" });
  assert.equal(o.ip, "*");
  assert.equal(o.location, "node7.cluster");
  assert.equal(o.clusterId, "1700000000-abcd");
  assert.equal(o.profileDir, "/home/u/.ipython/profile_mpi");
});

test("what ipyparallel 7.1 launchers pass: --profile-dir DIR --cluster-id ID, the id possibly empty", () => {
  const o = parse(["--profile-dir", "/p/profile_pbs", "--cluster-id", ""]);
  assert.equal(o.profileDir, "/p/profile_pbs");
  assert.equal(o.clusterId, "");
  assert.equal(parse(["--profile-dir", "/p", "--cluster-id", "c1"]).clusterId, "c1");
});

test("launchers export IPP_CLUSTER_ID/IPP_PROFILE_DIR even when empty: empty profile dir means unset", () => {
  const o = parse([], { IPP_CLUSTER_ID: "", IPP_PROFILE_DIR: "" });
  assert.equal(o.clusterId, "");
  assert.equal(o.profileDir, undefined);
});

test("the command line wins over the environment", () => {
  const o = parse(["--cluster-id=cli", "--profile-dir=/cli"], { IPP_CLUSTER_ID: "env", IPP_PROFILE_DIR: "/env" });
  assert.equal(o.clusterId, "cli");
  assert.equal(o.profileDir, "/cli");
});

test("--name=value, --name value and --Class.trait in both forms", () => {
  assert.equal(parse(["--ping=500"]).heartbeatPeriodMs, 500);
  assert.equal(parse(["--ping", "500"]).heartbeatPeriodMs, 500);
  assert.equal(parse(["--HeartMonitor.period=700"]).heartbeatPeriodMs, 700);
  assert.equal(parse(["--HeartMonitor.period", "700"]).heartbeatPeriodMs, 700);
  assert.equal(parse(["--IPController.location", "h"]).location, "h");
  assert.equal(parse(["--ProfileDir.location=/x"]).profileDir, "/x");
  assert.equal(parse(["--BaseParallelApplication.cluster_id=z"]).clusterId, "z");
});

test("a parent-class trait can be set through IPController, as traitlets allows", () => {
  assert.equal(parse(["--IPController.cluster_id=abc"]).clusterId, "abc");
  assert.equal(parse(["--IPController.log_level=DEBUG"]).logLevel, "debug");
  assert.equal(parse(["--IPController.profile=pbs"]).profile, "pbs");
  assert.equal(parse(["--BaseParallelApplication.log_level=40"]).logLevel, "error");
  // but not the other way round
  fails(["--Application.cluster_id=abc"], "IPP_ARGS_UNKNOWN_OPTION", "--Application.cluster_id");
});

test("deprecated class names HubFactory and IPControllerApp still configure IPController", () => {
  assert.equal(parse(["--HubFactory.ip=0.0.0.0"]).ip, "0.0.0.0");
  assert.equal(parse(["--IPControllerApp.reuse_files=True"]).reuse, true);
});

test("string values: one pair of quotes stripped, ~ expanded, like traitlets", () => {
  assert.equal(parse(["--ip='*'"]).ip, "*");
  assert.equal(parse(['--location="h.example"']).location, "h.example");
  assert.equal(parse(["--profile-dir=~/p"]).profileDir, "/home/u/p");
  assert.equal(parse([], { IPP_PROFILE_DIR: "~/q" }).profileDir, "/home/u/q");
});

test("log levels by name or number; --debug and --quiet", () => {
  const cases: Array<[string, string]> = [["DEBUG", "debug"], ["info", "info"], ["WARN", "warn"], ["WARNING", "warn"],
    ["ERROR", "error"], ["CRITICAL", "error"], ["10", "debug"], ["20", "info"], ["30", "warn"], ["40", "error"], ["50", "error"], ["0", "debug"]];
  for (const [raw, lvl] of cases) assert.equal(parse([`--log-level=${raw}`]).logLevel, lvl, raw);
  assert.equal(parse(["--debug"]).logLevel, "debug");
  assert.equal(parse(["--quiet"]).logLevel, "error");
  fails(["--log-level=LOUD"], "IPP_ARGS_BAD_VALUE", "--log-level");
  fails(["--log-level=25"], "IPP_ARGS_BAD_VALUE", "--log-level");
});

test("port pools: ranges, lists, repeated options accumulate, deprecated single ports append", () => {
  assert.deepEqual(parse(["--ports=10101-10103,10110"]).ports.common, [10101, 10102, 10103, 10110]);
  assert.deepEqual(parse(["--ports", "1-2", "--ports", "5"]).ports.common, [1, 2, 5]);
  assert.deepEqual(parse(["--IPController.ports=[7, 8]"]).ports.common, [7, 8]);
  assert.deepEqual(parse(["--engine-ports=20000-20001", "--client-ports=30000"]).ports, { common: [], engine: [20000, 20001], client: [30000] });
  assert.deepEqual(parse(["--IPController.engine_ports=1-2", "--IPController.client_ports=3"]).ports, { common: [], engine: [1, 2], client: [3] });
  assert.deepEqual(parse(["--port=4000"]).ports.engine, [4000]);
  assert.deepEqual(parse(["--IPController.notifier_port=4001"]).ports.client, [4001]);
  assert.deepEqual(parse(["--IPController.mon_port=4002"]).ports.common, [4002]);
  fails(["--ports=10-5"], "IPP_ARGS_BAD_VALUE", "--ports");
  fails(["--ports=0"], "IPP_ARGS_BAD_VALUE", "--ports");
  fails(["--ports=70000"], "IPP_ARGS_BAD_VALUE", "--ports");
  fails(["--ports=abc"], "IPP_ARGS_BAD_VALUE", "--ports");
  fails(["--port=x"], "IPP_ARGS_BAD_VALUE", "--port");
});

test("assignPorts draws in ipcontroller's order: registration, engine sockets, then client sockets", () => {
  const a = assignPorts({ common: Array.from({ length: 16 }, (_, i) => 10101 + i), engine: [], client: [] });
  assert.equal(a.registration, 10101);
  assert.deepEqual(a.engine, { control: 10102, mux: 10103, task: 10104, iopub: 10105, hb_ping: 10106, hb_pong: 10107, broadcast: [10108, 10109] });
  assert.deepEqual(a.client, { control: 10110, mux: 10111, task: 10112, iopub: 10113, notification: 10114, broadcast: 10115 });
});

test("assignPorts: side pools first, then the common pool, then any free port", () => {
  const a = assignPorts({ common: [9000, 9001], engine: [8000], client: [7000] });
  assert.equal(a.registration, 8000);
  assert.equal(a.engine.control, 9000);
  assert.equal(a.engine.mux, 9001);
  assert.equal(a.engine.task, undefined);
  assert.deepEqual(a.engine.broadcast, [undefined, undefined]);
  assert.equal(a.client.control, 7000);
  assert.equal(a.client.mux, undefined);
  const none = assignPorts({ common: [], engine: [], client: [] });
  assert.equal(none.registration, undefined);
});

test("assignPorts: 2**depth broadcast leaves", () => {
  const a = assignPorts({ common: Array.from({ length: 20 }, (_, i) => 100 + i), engine: [], client: [] }, 4);
  assert.deepEqual(a.engine.broadcast, [107, 108, 109, 110]);
  assert.equal(a.client.control, 111);
});

test("assignPorts rejects a port given twice", () => {
  assert.throws(() => assignPorts({ common: [5, 6], engine: [5], client: [] }), (e: unknown) => e instanceof ControllerArgsError && e.code === "IPP_ARGS_BAD_VALUE");
});

test("assignPorts never assigns a port twice and uses pool ports before free ones (property)", () => {
  fc.assert(fc.property(
    fc.uniqueArray(fc.integer({ min: 1, max: 65535 }), { maxLength: 30 }).chain((all) =>
      fc.tuple(fc.constant(all), fc.integer({ min: 0, max: all.length }), fc.integer({ min: 0, max: all.length }))),
    ([all, x, y]) => {
      const [i, j] = x <= y ? [x, y] : [y, x];
      const pools = { engine: all.slice(0, i), client: all.slice(i, j), common: all.slice(j) };
      const a = assignPorts(pools);
      const used = [a.registration, ...Object.values(a.engine).flat(), ...Object.values(a.client)].filter((p) => p !== undefined);
      assert.equal(new Set(used).size, used.length);
      for (const p of used) assert.ok(all.includes(p as number));
      // 9 engine-side draws (registration + control, mux, task, iopub, hb_ping, hb_pong and the
      // 2 broadcast leaves: upstream's 8 engine ports), then 6 client-side draws; each side's pool first
      const e = Math.min(9, pools.engine.length);
      const ce = Math.min(9 - e, pools.common.length);
      const c = Math.min(6, pools.client.length);
      const cc = Math.min(6 - c, pools.common.length - ce);
      assert.equal(used.length, e + ce + c + cc);
      if (pools.engine.length > 0) assert.equal(a.registration, pools.engine[0]);
    },
  ));
});

test("parsePortRange", () => {
  assert.deepEqual(parsePortRange("--ports", "1,3-5,6"), [1, 3, 4, 5, 6]);
  assert.deepEqual(parsePortRange("--ports", " 10 - 11 "), [10, 11]);
});

test("--ping and heartbeat misses", () => {
  assert.equal(parse(["--ping=100"]).heartbeatPeriodMs, 100);
  assert.equal(parse(["--HeartMonitor.max_heartmonitor_misses=3"]).maxHeartbeatMisses, 3);
  fails(["--ping=0"], "IPP_ARGS_BAD_VALUE", "--ping");
  fails(["--ping=fast"], "IPP_ARGS_BAD_VALUE", "--ping");
});

test("--scheme: the five Python schemes; pure is rejected naming the flag", () => {
  for (const s of ["leastload", "lru", "plainrandom", "twobin", "weighted"]) assert.equal(parse([`--scheme=${s}`]).taskScheme, s);
  assert.equal(parse(["--TaskScheduler.scheme_name=lru"]).taskScheme, "lru");
  const e = fails(["--scheme=pure"], "IPP_ARGS_UNSUPPORTED", "--scheme=pure");
  assert.match(e.message, /pure/);
  fails(["--scheme=fastest"], "IPP_ARGS_BAD_VALUE", "--scheme");
  assert.equal(parse(["--hwm=0"]).hwm, 0);
  fails(["--hwm=-1"], "IPP_ARGS_BAD_VALUE", "--hwm");
});

test("task databases: --dictdb, --nodb and --sqlitedb accepted; --mongodb fails naming the flag", () => {
  assert.equal(parse(["--nodb"]).db, "dictdb");
  assert.deepEqual(parse(["--nodb"]).notes.map((n) => n.flag), ["--nodb"]);
  assert.equal(parse(["--IPController.db_class=NoDB"]).notes.length, 1);
  assert.equal(parse(["--IPController.db_class=ipyparallel.controller.dictdb.DictDB"]).db, "dictdb");
  assert.equal(parse(["--sqlitedb"]).db, "sqlitedb");
  assert.deepEqual(parse(["--sqlitedb"]).sqlite, { filename: "tasks.db", table: "ipython-tasks" });
  assert.deepEqual(parse(["--sqlitedb", "--SQLiteDB.filename=t.db", "--SQLiteDB.location=/data", "--SQLiteDB.table=mine"]).sqlite, { filename: "t.db", location: "/data", table: "mine" });
  fails(["--SQLiteDB.filename="], "IPP_ARGS_BAD_VALUE", "--SQLiteDB.filename");
  assert.match(fails(["--mongodb"], "IPP_ARGS_UNSUPPORTED", "--mongodb").message, /MongoDB/);
  assert.equal(parse(["--IPController.db_class=ipyparallel.controller.sqlitedb.SQLiteDB"]).db, "sqlitedb");
  assert.equal(parse(["--sqlitedb", "--dictdb"]).db, "dictdb");
  fails(["--IPController.db_class=my.DB"], "IPP_ARGS_BAD_VALUE", "--IPController.db_class");
  fails(["--MongoDB.url=x"], "IPP_ARGS_UNSUPPORTED", "--MongoDB.url");
  assert.equal(parse(["--DictDB.record_limit=10", "--DictDB.size_limit=1000", "--DictDB.cull_fraction=0.1"]).dbRecordLimit, 10);
  fails(["--DictDB.cull_fraction=0.5"], "IPP_ARGS_UNSUPPORTED", "--DictDB.cull_fraction=0.5");
});

test("--reuse; --restore implies --reuse", () => {
  assert.equal(parse(["--reuse"]).reuse, true);
  assert.equal(parse(["--IPController.reuse_files=True"]).reuse, true);
  assert.equal(parse(["--IPController.reuse_files=0"]).reuse, false);
  assert.deepEqual([parse(["--restore"]).restore, parse(["--restore"]).reuse], [true, true]);
  assert.equal(parse(["--IPController.restore_engines=True"]).restore, true);
  assert.equal(parse(["--IPController.restore_engines=False"]).reuse, false);
  assert.equal(parse([]).restore, false);
});

test("HMAC key: $IPP_SESSION_KEY, --Session.key, --keyfile/--key-file, --no-secure, --secure", () => {
  assert.equal(parse([], { IPP_SESSION_KEY: "k-env" }).key, "k-env");
  assert.equal(parse([], { IPP_KEY: "k-ours" }).key, "k-ours");
  assert.equal(parse([], { IPP_KEY: "same", IPP_SESSION_KEY: "same" }).key, "same");
  fails([], "IPP_ARGS_BAD_VALUE", "$IPP_KEY", { IPP_KEY: "a", IPP_SESSION_KEY: "b" });
  assert.equal(parse(["--Session.key=k-cli"], { IPP_SESSION_KEY: "k-env" }).key, "k-cli");
  const kf = parse(["--keyfile=/run/secret/key"], { IPP_SESSION_KEY: "k-env" });
  assert.equal(kf.keyFile, "/run/secret/key");
  assert.equal(kf.key, undefined);
  assert.equal(parse(["--key-file", "/k"]).keyFile, "/k");
  assert.match(fails(["--no-secure"], "IPP_ARGS_UNSUPPORTED", "--no-secure").message, /CurveZMQ/);
  fails([], "IPP_ARGS_UNSUPPORTED", "$IPP_SESSION_KEY", { IPP_SESSION_KEY: "" });
  fails(["--Session.key="], "IPP_ARGS_UNSUPPORTED", "--Session.key");
  assert.equal(parse(["--no-secure", "--enable-curve"]).key, "");
  const s = parse(["--secure"], { IPP_SESSION_KEY: "k-env" });
  assert.equal(s.key, undefined);
  assert.equal(s.generateKey, true);
  assert.equal(parse(["--Session.signature_scheme=hmac-sha256", "--Session.packer=json"]).key, undefined);
  fails(["--Session.signature_scheme=hmac-md5"], "IPP_ARGS_UNSUPPORTED", "--Session.signature_scheme=hmac-md5");
  fails(["--Session.packer=pickle"], "IPP_ARGS_UNSUPPORTED", "--Session.packer=pickle");
});

test("CurveZMQ: --enable-curve, $IPP_ENABLE_CURVE=1, keys from env; signing off unless a key is given", () => {
  const pub = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
  const sec = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6";
  const a = parse(["--enable-curve"]);
  assert.equal(a.enableCurve, true);
  assert.equal(a.key, "");
  const b = parse([], { IPP_ENABLE_CURVE: "1", IPP_CURVE_PUBLICKEY: pub, IPP_CURVE_SECRETKEY: sec });
  assert.equal(b.enableCurve, true);
  assert.equal(b.curvePublicKey, pub);
  assert.equal(b.curveSecretKey, sec);
  assert.equal(parse([], { IPP_ENABLE_CURVE: "1", IPP_SESSION_KEY: "k" }).key, "k");
  assert.equal(parse([], { IPP_ENABLE_CURVE: "0" }).enableCurve, false);
  assert.equal(parse(["--IPController.enable_curve=True"]).enableCurve, true);
  assert.equal(parse(["--IPController.enable_curve=False"], { IPP_ENABLE_CURVE: "1" }).enableCurve, false);
  fails([], "IPP_ARGS_MISSING_VALUE", /curve_secretkey/, { IPP_CURVE_PUBLICKEY: pub });
  fails(["--IPController.curve_publickey=short", "--IPController.curve_secretkey=short"], "IPP_ARGS_BAD_VALUE", /curve_/);
});

test("network: --ip '*', --location, ssh servers; only tcp; one listen address", () => {
  const o = parse(["--ip", "*", "--location", "10.0.0.5", "--ssh=user@gw", "--enginessh=gw2"]);
  assert.deepEqual([o.ip, o.location, o.sshServer, o.engineSshServer], ["*", "10.0.0.5", "user@gw", "gw2"]);
  assert.equal(parse(["--transport=tcp"]).ip, "127.0.0.1");
  assert.match(fails(["--transport=ipc"], "IPP_ARGS_UNSUPPORTED", "--transport=ipc").message, /tcp/);
  fails(["--IPController.engine_transport=ipc"], "IPP_ARGS_UNSUPPORTED", "--IPController.engine_transport=ipc");
  assert.equal(parse(["--ip=0.0.0.0", "--IPController.engine_ip=0.0.0.0"]).ip, "0.0.0.0");
  fails(["--ip=0.0.0.0", "--IPController.engine_ip=10.1.1.1"], "IPP_ARGS_UNSUPPORTED", "--IPController.engine_ip");
  fails(["--IPController.hb=[1,2]"], "IPP_ARGS_UNSUPPORTED", "--IPController.hb");
  assert.equal(parse(["--IPController.broadcast_scheduler_depth=2"]).broadcastDepth, 2);
  fails(["--IPController.broadcast_scheduler_depth=x"], "IPP_ARGS_BAD_VALUE", "--IPController.broadcast_scheduler_depth");
  fails(["--ip="], "IPP_ARGS_BAD_VALUE", "--ip");
});

test("settings with no effect here are accepted and noted (so the command logs them)", () => {
  const o = parse(["--usethreads", "--ident=abc", "--user=me", "--IPController.monitor_ip=1.2.3.4", "--init"]);
  assert.deepEqual(o.notes.map((n) => n.flag), ["--usethreads", "--ident", "--user", "--IPController.monitor_ip", "--init"]);
  for (const n of o.notes) assert.ok(n.reason.length > 0);
});

test("rejected: log forwarding, logging dictConfig; --config=FILE is taken (loaded by the command after the profile's files)", () => {
  assert.equal(parse(["--config=extra.py"]).extraConfigFile, "extra.py");
  fails(["--log-url=tcp://1.2.3.4:20202"], "IPP_ARGS_UNSUPPORTED", "--log-url");
  assert.equal(parse(["--log-url="]).mode, "run");
  fails(["--Application.logging_config={}"], "IPP_ARGS_UNSUPPORTED", "--Application.logging_config");
});

test("other accepted settings", () => {
  const o = parse(["--work-dir=/tmp", "--log-to-file", "--clean-logs=True", "--profile=pbs", "--ipython-dir=/ip",
    "--IPController.registration_timeout=60", "--IPController.client_json_file=c.json", "--IPController.engine_json_file=e.json",
    "--BaseIPythonApplication.auto_create=False", "--http-port=9100", "--http-host=0.0.0.0", "--connection-dir=/var/run/ipp"]);
  assert.equal(o.workDir, "/tmp");
  assert.equal(o.logToFile, true);
  assert.equal(parse(["--log-to-file=False"]).logToFile, false);
  assert.equal(parse(["--log-to-file", "true"]).logToFile, true);
  assert.equal(parse(["--log-to-file", "--reuse"]).logToFile, true);
  assert.equal(o.cleanLogs, true);
  assert.equal(o.profile, "pbs");
  assert.equal(o.ipythonDir, "/ip");
  assert.equal(o.registrationTimeoutS, 60);
  assert.equal(o.clientJsonFile, "c.json");
  assert.equal(o.engineJsonFile, "e.json");
  assert.equal(o.autoCreate, false);
  assert.equal(o.httpPort, 9100);
  assert.equal(o.httpHost, "0.0.0.0");
  assert.equal(o.connectionDir, "/var/run/ipp");
  assert.equal(parse(["--http-port=0"]).httpPort, 0);
  fails(["--http-port=70000"], "IPP_ARGS_BAD_VALUE", "--http-port");
  assert.equal(parse([], { IPYTHONDIR: "/ipd" }).ipythonDir, "/ipd");
});

test("unknown options are errors, with a hint where one is likely", () => {
  assert.match(fails(["--engine_ports=1"], "IPP_ARGS_UNKNOWN_OPTION", "--engine_ports").message, /--engine-ports/);
  fails(["--bogus"], "IPP_ARGS_UNKNOWN_OPTION", "--bogus");
  assert.match(fails(["--prof=x"], "IPP_ARGS_UNKNOWN_OPTION", "--prof").message, /--profile/);
  fails(["--IPController.nonsense=1"], "IPP_ARGS_UNKNOWN_OPTION", "--IPController.nonsense");
  fails(["--Nope.x=1"], "IPP_ARGS_UNKNOWN_OPTION", "--Nope.x");
  assert.match(fails(["-ip=1.2.3.4"], "IPP_ARGS_UNKNOWN_OPTION", "-ip=1.2.3.4").message, /--ip/);
});

test("malformed command lines", () => {
  fails(["positional"], "IPP_ARGS_POSITIONAL", "positional");
  fails(["--reuse", "--", "x"], "IPP_ARGS_POSITIONAL", "x");
  assert.equal(parse(["--reuse", "--"]).reuse, true);
  fails(["--reuse=1"], "IPP_ARGS_UNEXPECTED_VALUE", "--reuse");
  fails(["--ip"], "IPP_ARGS_MISSING_VALUE", "--ip");
  fails(["--ip", "--reuse"], "IPP_ARGS_MISSING_VALUE", "--ip");
  fails(["--IPController.enable_curve"], "IPP_ARGS_MISSING_VALUE", "--IPController.enable_curve");
  fails(["--IPController.reuse_files=maybe"], "IPP_ARGS_BAD_VALUE", "--IPController.reuse_files");
  // a negative number is a value, as in argparse
  fails(["--hwm", "-1"], "IPP_ARGS_BAD_VALUE", "--hwm");
});

test("help, version and show-config", () => {
  assert.equal(parse(["--help"]).mode, "help");
  assert.equal(parse(["-h"]).mode, "help");
  assert.equal(parse(["--bogus", "--help"]).mode, "help");
  assert.equal(parse(["help"]).mode, "help");
  assert.equal(parse(["--help-all"]).mode, "help-all");
  assert.equal(parse(["--version"]).mode, "version");
  fails(["--reuse", "--", "--help"], "IPP_ARGS_POSITIONAL", "--help");
  assert.equal(parse(["--show-config"]).mode, "show-config");
  assert.equal(parse(["--show-config-json"]).mode, "show-config-json");
  const h = helpText(false);
  for (const a of Object.keys(ALIASES)) assert.ok(h.includes(`--${a}=`), `help lists --${a}`);
  for (const f of Object.keys(FLAGS)) assert.ok(h.includes(`--${f}`), `help lists --${f}`);
  assert.ok(helpText(true).includes("--IPController.enable_curve"));
});

test("the catalogue classifies every alias, flag and class option once", () => {
  const cat = optionCatalogue();
  const spelled = cat.flatMap((c) => c.spellings);
  for (const a of Object.keys(UPSTREAM_ALIASES)) assert.ok(spelled.includes(`--${a}`), `--${a}`);
  for (const f of UPSTREAM_FLAGS) assert.ok(spelled.includes(`--${f}`), `--${f}`);
  for (const c of cat) {
    assert.ok(["supported", "meaningless", "rejected"].includes(c.status));
    assert.ok(c.why.length > 10, `${c.spellings.join(", ")} says why`);
  }
  assert.equal(cat.find((c) => c.spellings.includes("--mongodb"))?.status, "rejected");
  assert.equal(cat.find((c) => c.spellings.includes("--usethreads"))?.status, "meaningless");
});

test("--max-message-size takes bytes with k/M/G or Ki/Mi/Gi units; history sizes are positive integers", () => {
  assert.equal(parse(["--max-message-size=1073741824"]).maxMessageBytes, 2 ** 30);
  assert.equal(parse(["--max-message-size", "512Mi"]).maxMessageBytes, 512 * 2 ** 20);
  assert.equal(parse(["--IppOperator.max_message_size=2G"]).maxMessageBytes, 2e9);
  assert.equal(parse([]).maxMessageBytes, undefined);
  fails(["--max-message-size=lots"], "IPP_ARGS_BAD_VALUE", "--max-message-size");
  fails(["--max-message-size=10"], "IPP_ARGS_BAD_VALUE", "--max-message-size");
  fails(["--max-message-size=5Gi"], "IPP_ARGS_BAD_VALUE", "--max-message-size");
  assert.equal(parse(["--Session.digest_history_size=100"]).signatureHistory, 100);
  assert.equal(parse(["--IppOperator.task_history=5000"]).taskHistory, 5000);
  fails(["--IppOperator.task_history=0"], "IPP_ARGS_BAD_VALUE", "--IppOperator.task_history");
});
