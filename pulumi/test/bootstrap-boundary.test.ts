// The permissions boundary from the pipeline program's side: every role the program creates, in
// every stack flavour, carries its class's boundary (without it the deployer may not create the
// role), and the boundary leaves every role all that its own policies grant, so that bounding the
// roles takes nothing from the functions and tools.

import { strict as assert } from "node:assert";

import { classBoundaryArn, environmentClass, permissionsBoundaryArn } from "../src/boundary";
import { allFacts } from "../bootstrap/facts";
import { boundaryPolicyDocument, type PolicyDocument, type Statement } from "../bootstrap/policies";
import { decide, type Principal } from "../bootstrap/simulate";
import { ACCOUNT_ID, deploy, ofType, type Deployment } from "./harness";

const PARTITION = "aws";
const FACTS = allFacts({ accountId: ACCOUNT_ID, partition: PARTITION, repository: "example-org/eventpipe" });
const parse = (v: unknown): any => (typeof v === "string" ? JSON.parse(v) : v);

/** A value that satisfies a condition's pattern (`raw/*` → `raw/x`). */
const instance = (pattern: string) => pattern.replace(/\*/g, "x").replace(/\?/g, "x");

/** A request context that satisfies every condition of a statement, as the real request would. */
function satisfying(condition: Record<string, Record<string, string | string[]>> | undefined): Record<string, string | string[]> {
    const context: Record<string, string | string[]> = {};
    for (const [operator, keys] of Object.entries(condition ?? {})) {
        if (!/^(ForAnyValue:|ForAllValues:)?(StringEquals|StringLike|ArnLike|ArnEquals|Bool)(IfExists)?$/.test(operator)) {
            throw new Error(`teach satisfying() the condition operator ${operator}`);
        }
        for (const [key, value] of Object.entries(keys)) {
            const first = [value].flat()[0] as string;
            context[key] = operator.startsWith("For") ? [instance(first)] : instance(first);
        }
    }
    return context;
}

/** The ARN a statement's resource pattern stands for (`.../raw/*` → `.../raw/x`), `*` as it is. */
function concrete(resource: string): string[] {
    return resource === "*" ? ["*"] : [instance(resource), resource.replace(/\*/g, "x:1")];
}

function tagsOf(d: Deployment): Record<string, string> {
    const provider = d.resources.find((r) => r.type === "pulumi:providers:aws");
    return parse(provider?.inputs.defaultTags)?.tags ?? {};
}

for (const stack of ["dev", "prod", "pr-42"]) {
    const envClass = environmentClass(stack);

    describe(`bootstrap: the ${stack} stack's roles and the ${envClass} boundary`, () => {
        let d: Deployment;
        before(async () => {
            d = await deploy(stack);
        });

        it(`every role carries the ${envClass} boundary`, () => {
            const expected = classBoundaryArn(d.env.project, envClass, ACCOUNT_ID, PARTITION);
            assert.equal(permissionsBoundaryArn(d.env, ACCOUNT_ID, PARTITION), expected);
            const roles = ofType(d, "aws:iam/role:Role");
            assert.ok(roles.length >= 2, "the program creates roles");
            const without = roles.filter((r) => r.inputs.permissionsBoundary !== expected).map((r) => `${r.inputs.name}: ${String(r.inputs.permissionsBoundary)}`);
            assert.deepEqual(
                without,
                [],
                "set `permissionsBoundary: permissionsBoundaryArn(ctx.env, ctx.accountId, ctx.partition)` (src/boundary.ts) on these roles",
            );
        });

        it("the boundary leaves every role what its own policies grant", async () => {
            const boundary: PolicyDocument = boundaryPolicyDocument(FACTS[envClass]);
            const keyPolicies = ofType(d, "aws:kms/key:Key").map((k) => ({ arn: k.state.arn as string, policy: parse(k.inputs.policy) }));
            const tags = Object.fromEntries(Object.entries(tagsOf(d)).map(([k, v]) => [`aws:ResourceTag/${k}`, v]));
            const refused: string[] = [];
            let checked = 0;
            for (const rolePolicy of ofType(d, "aws:iam/rolePolicy:RolePolicy")) {
                const document = parse(rolePolicy.inputs.policy) as PolicyDocument;
                const principal: Principal = {
                    arn: `arn:aws:iam::${ACCOUNT_ID}:role/${rolePolicy.inputs.role}`,
                    accountId: ACCOUNT_ID,
                    identity: [document],
                    boundary,
                };
                for (const s of document.Statement.filter((x: Statement) => x.Effect === "Allow")) {
                    const context = { "aws:SecureTransport": "true", "s3:ResourceAccount": ACCOUNT_ID, ...tags, ...satisfying(s.Condition) };
                    for (const action of [s.Action].flat()) {
                        for (const resource of [s.Resource ?? "*"].flat()) {
                            // A pattern stands for a name or a name and a timestamp; the first the
                            // simulator accepts for the action is the one evaluated.
                            let decision: string | undefined;
                            const errors: string[] = [];
                            for (const arn of concrete(resource)) {
                                try {
                                    const keyPolicy = keyPolicies.find((k) => k.arn === arn)?.policy;
                                    decision = (await decide(principal, { action, resource: arn, context }, keyPolicy)).decision;
                                    break;
                                } catch (e) {
                                    errors.push((e as Error).message.split("\n")[0] as string);
                                }
                            }
                            assert.ok(decision !== undefined, errors.join("; "));
                            checked += 1;
                            if (decision !== "Allowed") {
                                refused.push(`${rolePolicy.inputs.role} ${s.Sid ?? ""}: ${action} on ${resource}: ${decision}`);
                            }
                        }
                    }
                }
            }
            assert.ok(checked > 20, `${checked} grants checked`);
            assert.deepEqual(refused, [], "widen the boundary (bootstrap/policies.ts, boundaryPolicyDocument) or narrow the role");
        });

        it("another class's boundary would refuse them (so the check above can fail)", async () => {
            const other = envClass === "preview" ? "prod" : "preview";
            const boundary = boundaryPolicyDocument(FACTS[other]);
            const rolePolicy = ofType(d, "aws:iam/rolePolicy:RolePolicy")[0];
            assert.ok(rolePolicy);
            const document = parse(rolePolicy.inputs.policy) as PolicyDocument;
            const grant = document.Statement.find((s) => s.Effect === "Allow" && [s.Resource].flat().every((r) => r !== "*"));
            assert.ok(grant, "a grant on the stack's own resources");
            const principal: Principal = { arn: `arn:aws:iam::${ACCOUNT_ID}:role/${rolePolicy.inputs.role}`, accountId: ACCOUNT_ID, identity: [document], boundary };
            const action = [grant.Action].flat()[0] as string;
            const resource = instance([grant.Resource].flat()[0] as string);
            const context = { "aws:SecureTransport": "true", "s3:ResourceAccount": ACCOUNT_ID, ...satisfying(grant.Condition) };
            assert.notEqual((await decide(principal, { action, resource, context })).decision, "Allowed", `${action} on ${resource}`);
            assert.equal((await decide({ ...principal, boundary: boundaryPolicyDocument(FACTS[envClass]) }, { action, resource, context })).decision, "Allowed");
        });
    });
}
