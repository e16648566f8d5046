import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { isDeepStrictEqual } from "node:util";

import {
    ConfigError,
    DEFAULT_ENVIRONMENTS_DIR,
    fileNameFor,
    isPreview,
    loadEnvironment,
    parseCidr,
    parseEnvironment,
    semanticErrors,
    type Environment,
} from "../src/config";
import { createPipeline } from "../src/pipeline";
import { artifacts, deploy, GIT_SHA, tempDir, type Deployment } from "./harness";

const SCHEMA = path.join(DEFAULT_ENVIRONMENTS_DIR, "schema.json");
const devText = (): string => fs.readFileSync(path.join(DEFAULT_ENVIRONMENTS_DIR, "dev.toml"), "utf8");

function parseDev(edit: (text: string) => string): Environment {
    return parseEnvironment("dev.toml", edit(devText()), SCHEMA);
}

function rejects(edit: (text: string) => string, pattern: RegExp): void {
    assert.throws(() => parseDev(edit), (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err));
        assert.match(err.message, pattern);
        assert.match(err.message, /^environment file dev\.toml: /);
        return true;
    });
}

describe("environment files", () => {
    it("the committed JSON Schema is the draft 2020-12 schema generated from the Rust types", () => {
        const schema = JSON.parse(fs.readFileSync(SCHEMA, "utf8"));
        assert.equal(schema.$schema, "https://json-schema.org/draft/2020-12/schema");
        assert.equal(schema.title, "Environment");
        assert.equal(schema.additionalProperties, false);
    });

    for (const stack of ["local", "dev", "prod", "pr-42"]) {
        it(`${stack}: the committed file is valid and names the stack`, () => {
            const env = loadEnvironment(stack);
            assert.equal(env.name, stack);
            assert.equal(env.project, "eventpipe");
            assert.deepEqual(semanticErrors(env), []);
        });
    }

    it("stack names pick files like the Rust side", () => {
        assert.equal(fileNameFor("pr-7"), "preview.toml");
        assert.equal(fileNameFor("prod"), "prod.toml");
        assert.equal(fileNameFor("local"), "local.toml");
        for (const bad of ["pr-", "pr-x", "staging", "../dev", "pr-1234567", "preview", "PR-1"]) {
            assert.throws(() => fileNameFor(bad), ConfigError, bad);
        }
        assert.ok(isPreview("pr-123456"));
        assert.ok(!isPreview("pr-1234567"));
    });

    it("applies the Rust defaults: no network, no tags, no emails", () => {
        const env = parseDev((t) => t.replace(/\n\[network\]\n[^[]*$/, "\n").replace(/alarm_emails = .*\n/, ""));
        assert.deepEqual(env.network, { vpc: false, vpc_cidr: null, cloudtrail: false });
        assert.deepEqual(env.tags, {});
        assert.deepEqual(env.observability.alarm_emails, []);
        assert.equal(loadEnvironment("dev").stream_processor.reserved_concurrency, 10);
        assert.equal(loadEnvironment("local").stream_processor.reserved_concurrency, undefined);
    });

    it("a file whose name is not the stack's is rejected", () => {
        const dir = tempDir("eventpipe-env-");
        fs.writeFileSync(path.join(dir, "dev.toml"), devText().replace('name = "dev"', 'name = "prod"'));
        assert.throws(() => loadEnvironment("dev", { dir, schemaPath: SCHEMA }), /`name` is `prod` but the stack is `dev`/);
    });

    it("unknown keys are errors, at the top and in tables", () => {
        rejects((t) => t.replace("[stream]\n", "[stream]\nshard_count = 3\n"), /unknown key `shard_count` in `stream`/);
        rejects((t) => `colour = "blue"\n${t}`, /unknown key `colour` in the file/);
        rejects((t) => t.replace("[network]\n", "[network]\nnat = true\n"), /unknown key `nat` in `network`/);
    });

    it("missing keys and wrong types are errors", () => {
        rejects((t) => t.replace('region = "eu-west-1"\n', ""), /missing key `region`/);
        rejects((t) => t.replace("batch_size = 1000", 'batch_size = "1000"'), /`event_source_mapping.batch_size` must be integer/);
        rejects((t) => t.replace('mode = "provisioned"', 'mode = "fast"'), /`stream.mode`/);
        rejects((t) => t.replace("batch_size = 1000", "batch_size = -5"), /`event_source_mapping.batch_size`/);
    });

    it("a TOML syntax error names the file", () => {
        rejects((t) => `${t}\n[stream\n`, /./);
    });

    it("the semantic rules of Environment::validate() apply, all reported at once", () => {
        rejects(
            (t) => t.replace("maximum_retry_attempts = 5", "maximum_retry_attempts = -1").replace("batch_size = 1000", "batch_size = 20000"),
            /`event_source_mapping.batch_size` must be 1-10000; `event_source_mapping.maximum_retry_attempts` must be finite: 0-10000/,
        );
        rejects((t) => t.replace("maximum_record_age_seconds = 3600", "maximum_record_age_seconds = -1"), /maximum_record_age_seconds` must be finite/);
        rejects((t) => t.replace("shards = 2\n", ""), /`stream.shards` is required when `stream.mode` is `provisioned`/);
        rejects((t) => t.replace("shards = 2", "shards = 501"), /`stream.shards` must be 1-500/);
        rejects((t) => t.replace("retention_hours = 24", "retention_hours = 23"), /`stream.retention_hours` must be 24-8760/);
        rejects((t) => t.replace("memory_mb = 512", "memory_mb = 64"), /`stream_processor.memory_mb` must be 128-10240/);
        rejects((t) => t.replace("timeout_seconds = 120", "timeout_seconds = 901"), /`transformer.timeout_seconds` must be 1-900/);
        rejects((t) => t.replace("maximum_batching_window_seconds = 1", "maximum_batching_window_seconds = 301"), /batching_window_seconds` must be 0-300/);
        rejects((t) => t.replace("parallelization_factor = 1", "parallelization_factor = 11"), /parallelization_factor` must be 1-10/);
        rejects((t) => t.replace('starting_position = "TRIM_HORIZON"', 'starting_position = "AT_TIMESTAMP"'), /starting_position_timestamp` is required/);
        rejects((t) => t.replace("maximum_retry_attempts = 2", "maximum_retry_attempts = 3"), /`transformer_async.maximum_retry_attempts` must be 0-2/);
        rejects((t) => t.replace("maximum_event_age_seconds = 3600", "maximum_event_age_seconds = 59"), /maximum_event_age_seconds` must be 60-21600/);
        rejects((t) => t.replace("stuck_after_minutes = 15", "stuck_after_minutes = 0"), /stuck_after_minutes` must be at least 1/);
        rejects((t) => t.replace("quarantine_expiry_days = 14", "quarantine_expiry_days = 0"), /expiry days in `storage` must be at least 1/);
        rejects((t) => t.replace("log_retention_days = 14", "log_retention_days = 10"), /log_retention_days` must be a CloudWatch Logs retention value/);
        rejects((t) => t.replace("error_rate_alarm_percent = 5.0", "error_rate_alarm_percent = 0.0"), /error_rate_alarm_percent` must be in \(0, 100\]/);
        rejects((t) => t.replace('project = "eventpipe"', 'project = "Event_Pipe"'), /`project` must be 1-20 lower-case/);
        rejects((t) => t.replace('name = "dev"', 'name = "staging"'), /`name` must be `local`, `dev`, `prod`, `preview` or `pr-<number>`/);
        rejects((t) => t.replace(/vpc_cidr = .*\n/, ""), /`network.vpc_cidr` is required when `network.vpc` is on/);
    });

    it("the auditor's section follows the Rust rules: sizing, a period of 1-60 minutes, a lookback of 1-168 hours", () => {
        // Edits inside the [auditor] table only (other tables have keys of the same names).
        const auditor = (edit: (section: string) => string) => (t: string) =>
            t.replace(/\[auditor\]\n[^[]*/, (section) => edit(section));
        const set = (key: string, value: string) => auditor((section) => section.replace(new RegExp(`^${key} = .*$`, "m"), `${key} = ${value}`));
        const env = parseDev((t) => t);
        assert.deepEqual(
            [env.auditor.period_minutes, env.auditor.lookback_hours, env.auditor.reserved_concurrency],
            [5, 3, undefined],
        );
        for (const [key, value] of [["period_minutes", "1"], ["period_minutes", "60"], ["lookback_hours", "1"], ["lookback_hours", "168"]]) {
            assert.equal(String(parseDev(set(key as string, value as string)).auditor[key as "period_minutes" | "lookback_hours"]), value);
        }
        assert.equal(parseDev(auditor((section) => `${section}reserved_concurrency = 1\n`)).auditor.reserved_concurrency, 1);
        rejects(set("period_minutes", "0"), /`auditor.period_minutes` must be 1-60/);
        rejects(set("period_minutes", "61"), /`auditor.period_minutes` must be 1-60/);
        rejects(set("lookback_hours", "0"), /`auditor.lookback_hours` must be 1-168/);
        rejects(set("lookback_hours", "169"), /`auditor.lookback_hours` must be 1-168/);
        rejects(set("memory_mb", "64"), /`auditor.memory_mb` must be 128-10240/);
        rejects(set("timeout_seconds", "901"), /`auditor.timeout_seconds` must be 1-900/);
        // Reported together, in the Rust side's order.
        rejects((t) => set("lookback_hours", "169")(set("period_minutes", "0")(t)), /`auditor.period_minutes` must be 1-60; `auditor.lookback_hours` must be 1-168/);
        rejects(auditor((section) => `${section}cron = "daily"\n`), /unknown key `cron` in `auditor`/);
        rejects(auditor((section) => section.replace(/^period_minutes = .*\n/m, "")), /missing key `period_minutes` in `auditor`/);
        rejects((t) => t.replace(/\[auditor\]\n[^[]*/, ""), /missing key `auditor` in the file/);
    });

    it("AT_TIMESTAMP with a timestamp is accepted, and a timestamp without it rejected", () => {
        const env = parseDev((t) =>
            t.replace('starting_position = "TRIM_HORIZON"', 'starting_position = "AT_TIMESTAMP"\nstarting_position_timestamp = 1767225600'),
        );
        assert.equal(env.event_source_mapping.starting_position_timestamp, 1767225600);
        rejects((t) => t.replace('starting_position = "TRIM_HORIZON"', 'starting_position = "TRIM_HORIZON"\nstarting_position_timestamp = 1'), /only then/);
    });

    it("on_demand streams need no shard count", () => {
        const env = loadEnvironment("pr-1");
        assert.equal(env.stream.mode, "on_demand");
        assert.equal(env.stream.shards, undefined);
    });

    it("deployment rules: a usable VPC CIDR, email addresses, AWS tag limits", () => {
        const dir = tempDir("eventpipe-env-");
        const write = (text: string) => fs.writeFileSync(path.join(dir, "dev.toml"), text);
        const cidr = (value: string) => devText().replace(/vpc_cidr = .*\n/, `vpc_cidr = "${value}"\n`);
        write(cidr("10.0.0.0/8"));
        assert.throws(() => loadEnvironment("dev", { dir, schemaPath: SCHEMA }), /prefix length of 16-24/);
        write(cidr("10.0.0.1/16"));
        assert.throws(() => loadEnvironment("dev", { dir, schemaPath: SCHEMA }), /must be an IPv4 CIDR/);
        write(devText().replace(/alarm_emails = .*\n/, 'alarm_emails = ["oncall"]\n'));
        assert.throws(() => loadEnvironment("dev", { dir, schemaPath: SCHEMA }), /`oncall` is not an email address/);
        write(`${devText()}\n[tags]\n"aws:owner" = "x"\n`);
        assert.throws(() => loadEnvironment("dev", { dir, schemaPath: SCHEMA }), /`aws:` is reserved/);
        write(`${devText()}\n[tags]\ncost-centre = "data-platform"\n`);
        assert.deepEqual(loadEnvironment("dev", { dir, schemaPath: SCHEMA }).tags, { "cost-centre": "data-platform" });
    });

    it("parses CIDRs strictly", () => {
        assert.deepEqual(parseCidr("10.42.0.0/16"), { address: 0x0a2a0000, prefix: 16 });
        for (const bad of ["10.42.0.0", "10.42.0.0/33", "256.0.0.0/8", "10.42.0.1/16", "a.b.c.d/8"]) {
            assert.equal(parseCidr(bad), undefined, bad);
        }
    });

    it("a missing schema is reported with the command that generates it", () => {
        assert.throws(() => parseEnvironment("dev.toml", devText(), "/nonexistent/schema.json"), /UPDATE_EXPECT=1 cargo test -p pipeline-config/);
    });
});

/** The environment whose artifact and settings are promoted to prod (`cargo xtask promote --from dev --to prod`). */
const PRECEDES_PROD = "dev";

/**
 * Every switch of the environment schema (generated from the Rust types): a boolean, or a list that
 * turns something on by not being empty. Paths like `network.vpc`.
 */
function schemaSwitches(): string[] {
    const schema = JSON.parse(fs.readFileSync(SCHEMA, "utf8"));
    const resolve = (node: any): any => (node.$ref ? schema.$defs[String(node.$ref).replace("#/$defs/", "")] : node);
    const out: string[] = [];
    const walk = (node: any, prefix: string): void => {
        for (const [key, child] of Object.entries<any>(resolve(node).properties ?? {})) {
            const def = resolve(child);
            const types = [def.type].flat();
            if (types.includes("boolean") || types.includes("array")) {
                out.push(`${prefix}${key}`);
            } else if (def.properties) {
                walk(def, `${prefix}${key}.`);
            }
        }
    };
    walk(schema, "");
    return out.sort();
}

const valueAt = (env: Environment, switchPath: string): unknown =>
    switchPath.split(".").reduce<any>((o, k) => (o === undefined || o === null ? undefined : o[k]), env);
const isOn = (v: unknown): boolean => v === true || (Array.isArray(v) && v.length > 0);
function withSwitchOff(env: Environment, switchPath: string): Environment {
    const copy = JSON.parse(JSON.stringify(env)) as Environment;
    const keys = switchPath.split(".");
    const owner = keys.slice(0, -1).reduce<any>((o, k) => o[k], copy);
    const last = keys[keys.length - 1] as string;
    owner[last] = Array.isArray(owner[last]) ? [] : false;
    return copy;
}

/** What a deployment registers, by type and name, with its inputs. */
const registered = (d: Deployment): Map<string, unknown> => new Map(d.resources.map((r) => [`${r.type} ${r.name}`, r.inputs]));

describe("the environment before prod", () => {
    it(`runs every switch that changes prod's resources (${PRECEDES_PROD} has it on whenever prod does)`, async () => {
        const switches = schemaSwitches();
        assert.ok(switches.includes("network.vpc") && switches.length > 3, `switches found in the schema: ${switches.join(", ")}`);
        const prod = loadEnvironment("prod");
        const before = loadEnvironment(PRECEDES_PROD);
        const at = (env: Environment) =>
            deploy("prod", async () => (await createPipeline({ env, artifacts: artifacts(), gitSha: GIT_SHA })) as unknown as Record<string, unknown>);
        const baseline = registered(await at(prod));
        const changing: string[] = [];
        for (const s of switches.filter((s) => isOn(valueAt(prod, s)))) {
            const off = registered(await at(withSwitchOff(prod, s)));
            const same = off.size === baseline.size && [...baseline].every(([k, v]) => off.has(k) && isDeepStrictEqual(off.get(k), v));
            if (!same) {
                changing.push(s);
            }
        }
        assert.ok(changing.includes("network.vpc"), `turning the VPC off changes prod's resources (found: ${changing.join(", ")})`);
        const neverBeforeProd = changing.filter((s) => !isOn(valueAt(before, s)));
        assert.deepEqual(neverBeforeProd, [], `on in prod, first deployed in prod: ${neverBeforeProd.join(", ")}`);
    });
});
