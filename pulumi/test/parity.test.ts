// The local provisioner (Rust) and this program must express the same settings for an environment.
// `fixtures/local-settings.json` is the Rust side's view of `environments/local.toml` with account
// id 000000000000 (a Rust test writes it); `expressedSettings` is the view the components deploy,
// and `METADATA_TABLE` the metadata table's keys and pending index (the Rust side's
// `pipeline_core::metadata`).

import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";

import { METADATA_TABLE } from "../src/components/storage";
import { loadEnvironment } from "../src/config";
import { names } from "../src/names";
import { expressedSettings } from "../src/settings";
import { deploy, one } from "./harness";

const FIXTURE = path.join(__dirname, "fixtures", "local-settings.json");
const LOCAL_ACCOUNT_ID = "000000000000";

describe("parity with the local provisioner", () => {
    it("expressedSettings(local) and the metadata table equal the Rust side's fixture, key for key", () => {
        const { metadataTable, ...rust } = JSON.parse(fs.readFileSync(FIXTURE, "utf8"));
        const ours = expressedSettings(loadEnvironment("local"), LOCAL_ACCOUNT_ID);
        assert.deepStrictEqual(JSON.parse(JSON.stringify(ours)), rust);
        assert.deepStrictEqual(JSON.parse(JSON.stringify(METADATA_TABLE)), metadataTable);
    });

    it("names its resources in the order of the Rust `Names` struct, which serialises the fixture", () => {
        const { names: fixture } = JSON.parse(fs.readFileSync(FIXTURE, "utf8"));
        const ours = names(loadEnvironment("local"), LOCAL_ACCOUNT_ID);
        assert.deepEqual(Object.keys(ours), Object.keys(fixture));
        assert.deepEqual(Object.keys(ours).slice(4, 7), ["stream_processor", "transformer", "auditor"]);
        assert.equal(ours.auditor, "eventpipe-local-auditor");
    });

    it("the deployed mapping, notification, invoke config and schedule are exactly the expressed settings", async () => {
        const d = await deploy("dev");
        const s = expressedSettings(d.env, "123456789012");
        const esm = one(d, "aws:lambda/eventSourceMapping:EventSourceMapping").inputs;
        for (const [k, v] of Object.entries(s.eventSourceMapping)) {
            assert.deepStrictEqual(esm[k], v, k);
        }
        const rule = one(d, "aws:s3/bucketNotification:BucketNotification").inputs.lambdaFunctions[0];
        assert.equal(rule.filterPrefix, s.notification.prefix);
        assert.deepStrictEqual(rule.events, s.notification.events);
        const invoke = one(d, "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig").inputs;
        assert.equal(invoke.maximumRetryAttempts, s.transformerAsync.maximumRetryAttempts);
        assert.equal(invoke.maximumEventAgeInSeconds, s.transformerAsync.maximumEventAgeInSeconds);
        assert.equal(one(d, "aws:kinesis/stream:Stream").inputs.name, s.names.stream);
        const schedule = one(d, "aws:cloudwatch/eventRule:EventRule").inputs;
        assert.equal(schedule.name, s.auditorSchedule.ruleName);
        assert.equal(schedule.scheduleExpression, s.auditorSchedule.scheduleExpression);
        const table = one(d, "aws:dynamodb/table:Table").inputs;
        assert.equal(table.name, s.names.metadata_table);
        const t = METADATA_TABLE;
        assert.equal(table.hashKey, t.hashKey);
        assert.deepStrictEqual(table.ttl, { attributeName: t.ttlAttribute, enabled: true });
        assert.deepStrictEqual(table.globalSecondaryIndexes, [
            {
                name: t.pendingIndex.name,
                keySchemas: [
                    { attributeName: t.pendingIndex.hashKey, keyType: "HASH" },
                    { attributeName: t.pendingIndex.rangeKey, keyType: "RANGE" },
                ],
                projectionType: t.pendingIndex.projectionType,
            },
        ]);
        assert.equal(one(d, "aws:secretsmanager/secret:Secret").inputs.name, s.names.hmac_secret);
        assert.equal(one(d, "aws:sns/topic:Topic").inputs.name, s.names.alarm_topic);
    });
});
