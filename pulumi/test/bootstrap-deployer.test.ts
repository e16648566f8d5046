// The deployer roles against what the pipeline program really declares: the program runs under the
// mocks of harness.ts for each stack flavour, every resource type it registers must be in the table
// of provider calls (bootstrap/providerActions.ts), and every call of that table is simulated with
// the deployer's documents on the resource as the program names it. The other classes' deployers may
// touch none of those resources, and a reader may make the reads only.

import { strict as assert } from "node:assert";

import { environmentClass, DEPLOYED_CLASSES, type DeployedClass } from "../src/boundary";
import { allFacts } from "../bootstrap/facts";
import { isReadOnlyAction, READER_CLASSES, roleName, rolePolicyDocuments, type PolicyDocument, type RoleKind } from "../bootstrap/policies";
import { NO_AWS_CALLS, PROVIDER_CALLS, type Op, type ProgramResource, type ProviderCall, type Target, type Where } from "../bootstrap/providerActions";
import { decide, type Principal } from "../bootstrap/simulate";
import { ACCOUNT_ID, deploy, type Deployment } from "./harness";

const REPOSITORY = "example-org/eventpipe";
const PARTITION = "aws";
const FACTS = allFacts({ accountId: ACCOUNT_ID, partition: PARTITION, repository: REPOSITORY });

function principalOf(envClass: DeployedClass, kind: RoleKind, documents?: PolicyDocument[]): Principal {
    return {
        arn: `arn:aws:iam::${ACCOUNT_ID}:role/${roleName(FACTS[envClass].project, envClass, kind)}`,
        accountId: ACCOUNT_ID,
        identity: documents ?? rolePolicyDocuments(FACTS[envClass], kind).map((p) => p.document),
    };
}

const parse = (v: unknown): any => (typeof v === "string" ? JSON.parse(v) : v);

/** The tags the program's provider puts on every resource (its `defaultTags`). */
function providerTags(d: Deployment): Record<string, string> {
    const provider = d.resources.find((r) => r.type === "pulumi:providers:aws");
    assert.ok(provider, "the program declares its AWS provider");
    return parse(provider.inputs.defaultTags)?.tags ?? {};
}

/** The policy of the resource a call is authorised on, when the program gives it one. */
function resourcePolicyOf(d: Deployment, arn: string): unknown {
    const policyOf = (type: string, match: (r: ProgramResource) => boolean) => {
        const found = d.resources.find((r) => r.type === type && match(r));
        return found ? parse(found.inputs.policy) : undefined;
    };
    if (arn.includes(":kms:") && arn.includes(":key/")) {
        return policyOf("aws:kms/key:Key", (r) => r.state.arn === arn);
    }
    if (arn.startsWith("arn:aws:s3:::")) {
        const bucket = arn.slice("arn:aws:s3:::".length).split("/")[0];
        return policyOf("aws:s3/bucketPolicy:BucketPolicy", (r) => r.inputs.bucket === bucket);
    }
    if (arn.includes(":sqs:")) {
        const name = arn.slice(arn.lastIndexOf(":") + 1);
        return policyOf("aws:sqs/queuePolicy:QueuePolicy", (r) => String(r.inputs.queueUrl).endsWith(`/${name}`));
    }
    if (arn.includes(":sns:")) {
        return policyOf("aws:sns/topicPolicy:TopicPolicy", (r) => r.inputs.arn === arn);
    }
    return undefined;
}

interface Attempt {
    type: string;
    name: string;
    action: string;
    op: Op;
    /** Every resource the call is authorised on: it is allowed only if each one is. */
    targets: Target[];
    call: ProviderCall;
    resource: ProgramResource;
    where: Where;
}

/** Every call of the table for every resource of the deployment (that the class makes). */
function attempts(d: Deployment, envClass: DeployedClass): Attempt[] {
    const where: Where = { accountId: ACCOUNT_ID, region: d.env.region, partition: PARTITION, resources: d.resources };
    const out: Attempt[] = [];
    for (const resource of d.resources.filter((x) => x.custom && !NO_AWS_CALLS.includes(x.type))) {
        for (const call of PROVIDER_CALLS[resource.type]?.calls ?? []) {
            if ((call.when && !call.when(resource)) || (call.classes && !call.classes.includes(envClass))) {
                continue;
            }
            const targets = call.targets(resource, where);
            assert.ok(targets.length > 0, `${resource.type} ${call.action} names no resource`);
            out.push({ type: resource.type, name: resource.name, action: call.action, op: call.op, targets, call, resource, where });
        }
    }
    return out;
}

/** The request context of a call on one of its targets, as AWS would see it from the provider. */
function contextOf(d: Deployment, a: Attempt, target: Target): Record<string, string | string[]> {
    const tags = providerTags(d);
    const context: Record<string, string | string[]> = { "aws:SecureTransport": "true" };
    if (a.action.startsWith("s3:")) {
        context["s3:ResourceAccount"] = ACCOUNT_ID;
    }
    if (target.phase === "existing") {
        for (const [k, v] of Object.entries(tags)) {
            context[`aws:ResourceTag/${k}`] = v;
        }
    }
    if (a.op === "create" || /Tag/.test(a.action)) {
        const requested = { ...tags, ...(a.resource.inputs.tags ?? {}) };
        for (const [k, v] of Object.entries(requested)) {
            context[`aws:RequestTag/${k}`] = String(v);
        }
        context["aws:TagKeys"] = Object.keys(requested);
    }
    return { ...context, ...(a.call.context?.(a.resource, a.where) ?? {}) };
}

const label = (a: Attempt) => `${a.type} ${a.name}: ${a.op} ${a.action} on ${a.targets.map((t) => t.arn).join(" + ")}`;

async function decisions(d: Deployment, principal: Principal, list: Attempt[]): Promise<{ attempt: Attempt; decision: string }[]> {
    const out: { attempt: Attempt; decision: string }[] = [];
    const seen = new Map<string, string>();
    for (const a of list) {
        let decision = "Allowed";
        for (const target of a.targets) {
            const context = contextOf(d, a, target);
            const key = JSON.stringify([a.action, target.arn, context]);
            let one = seen.get(key);
            if (one === undefined) {
                one = (await decide(principal, { action: a.action, resource: target.arn, context }, resourcePolicyOf(d, target.arn))).decision;
                seen.set(key, one);
            }
            if (one !== "Allowed") {
                decision = one;
                break;
            }
        }
        out.push({ attempt: a, decision });
    }
    return out;
}

const deployments = new Map<string, Promise<Deployment>>();
const deployed = (stack: string) => {
    if (!deployments.has(stack)) {
        deployments.set(stack, deploy(stack));
    }
    return deployments.get(stack) as Promise<Deployment>;
};

for (const stack of ["dev", "prod", "pr-42"]) {
    const envClass = environmentClass(stack) as DeployedClass;

    describe(`bootstrap: the ${envClass} deployer and the ${stack} stack`, () => {
        it("every resource type the program declares has its provider calls researched", async () => {
            const d = await deployed(stack);
            const types = [...new Set(d.resources.filter((r) => r.custom && !NO_AWS_CALLS.includes(r.type)).map((r) => r.type))];
            assert.ok(types.length > 20, "the program registered its resources");
            assert.deepEqual(
                types.filter((t) => !PROVIDER_CALLS[t]),
                [],
                "add the provider's calls for these types to bootstrap/providerActions.ts, and allow them in bootstrap/policies.ts",
            );
        });

        it(`the ${envClass} deployer may make every call the provider makes to create, read, update and delete them`, async () => {
            const d = await deployed(stack);
            const list = attempts(d, envClass);
            assert.ok(list.length > 300, `${list.length} calls`);
            for (const op of ["create", "read", "update", "delete"]) {
                assert.ok(list.some((a) => a.op === op), `no ${op} call`);
            }
            const refused = (await decisions(d, principalOf(envClass, "deployer"), list)).filter((x) => x.decision !== "Allowed");
            assert.deepEqual(refused.map((x) => `${label(x.attempt)}: ${x.decision}`), []);
        });

        it("without one of its statements the same check fails (it is not vacuous)", async () => {
            const d = await deployed(stack);
            const documents = rolePolicyDocuments(FACTS[envClass], "deployer").map((p) => ({
                ...p.document,
                Statement: p.document.Statement.filter((s) => s.Sid !== "ManageOwnQueues" && s.Sid !== "ManageOwnTables"),
            }));
            const refused = (await decisions(d, principalOf(envClass, "deployer", documents), attempts(d, envClass))).filter((x) => x.decision !== "Allowed");
            assert.ok(refused.length > 0);
            assert.ok(refused.some((x) => x.attempt.action.startsWith("sqs:")) && refused.some((x) => x.attempt.action.startsWith("dynamodb:")));
        });

        for (const other of DEPLOYED_CLASSES.filter((c) => c !== envClass)) {
            it(`the ${other} deployer may touch none of its resources`, async () => {
                const d = await deployed(stack);
                // Actions that authorise only on "*" are not the resource's; their scoping is checked in
                // bootstrap-policies.test.ts (mappings by function, keys by tags).
                const list = attempts(d, envClass).filter((a) => a.targets.every((t) => t.arn !== "*"));
                const let_through = (await decisions(d, principalOf(other, "deployer"), list)).filter((x) => x.decision === "Allowed");
                assert.deepEqual(let_through.map((x) => label(x.attempt)), []);
            });
        }

        if (READER_CLASSES.includes(envClass)) {
            it(`the ${envClass} reader may make every read, and no write`, async () => {
                const d = await deployed(stack);
                const list = attempts(d, envClass);
                const results = await decisions(d, principalOf(envClass, "reader"), list);
                const readsRefused = results.filter((x) => x.attempt.op === "read" && x.decision !== "Allowed");
                assert.deepEqual(readsRefused.map((x) => `${label(x.attempt)}: ${x.decision}`), []);
                const writesAllowed = results.filter((x) => !isReadOnlyAction(x.attempt.action) && x.decision === "Allowed");
                assert.deepEqual(writesAllowed.map((x) => label(x.attempt)), []);
                assert.ok(results.some((x) => !isReadOnlyAction(x.attempt.action)), "the check saw writes");
            });
        }
    });
}
