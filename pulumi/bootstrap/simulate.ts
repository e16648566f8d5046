// Asks the IAM policy simulator (@cloud-copilot/iam-simulate) what a principal may do with the
// documents of policies.ts. The tests (test/bootstrap*.test.ts) use it; so can a person who wants to
// know why a deployer may or may not do something:
//
//   decide({ identity: [...], boundary }, { action: "iam:CreateRole", resource: "arn:...", context: {...} })
//
// Every simulation is validated first: an unknown action, a resource ARN of the wrong type for the
// action or a malformed policy is an error, never a quiet "denied".

import { runSimulation, runUnsafeSimulation, type Simulation } from "@cloud-copilot/iam-simulate";

import type { PolicyDocument } from "./policies";

export type Decision = "Allowed" | "ExplicitlyDenied" | "ImplicitlyDenied";

export interface Request {
    action: string;
    /** A concrete ARN, or `*` for the actions that authorise only on `*`. */
    resource: string;
    /** Request context keys (`aws:SecureTransport`, `iam:PermissionsBoundary`, tags, ...). */
    context?: Record<string, string | string[]>;
}

export interface Principal {
    /** The caller: a role ARN (or, for web identity, the OIDC provider ARN). */
    arn: string;
    accountId: string;
    /** Its identity policies (managed and inline alike). */
    identity: PolicyDocument[];
    boundary?: PolicyDocument;
}

export interface Outcome {
    decision: Decision;
    /**
     * Context keys the simulator dropped because the Service Authorization Reference does not list
     * them for this action and resource: a condition on one of them cannot match.
     */
    ignoredContextKeys: string[];
}

function simulation(principal: Principal, request: Request, resourcePolicy?: unknown): Simulation {
    return {
        request: {
            principal: principal.arn,
            action: request.action,
            resource: { resource: request.resource, accountId: principal.accountId },
            contextVariables: request.context ?? {},
        },
        identityPolicies: principal.identity.map((policy, i) => ({ name: `identity-${i}`, policy })),
        serviceControlPolicies: [],
        resourceControlPolicies: [],
        ...(resourcePolicy ? { resourcePolicy } : {}),
        ...(principal.boundary ? { permissionBoundaryPolicies: [{ name: "boundary", policy: principal.boundary }] } : {}),
    };
}

/** What the simulator decides for `request` by `principal`, with the resource's own policy if it has one. */
export async function decide(principal: Principal, request: Request, resourcePolicy?: PolicyDocument | unknown): Promise<Outcome> {
    const result = await runSimulation(simulation(principal, request, resourcePolicy), {});
    if (result.resultType === "error") {
        throw new Error(`cannot simulate ${request.action} on ${request.resource}: ${result.errors.message}\n${JSON.stringify(result.errors, null, 2)}`);
    }
    const ignored = result.resultType === "single" ? result.result.ignoredContextKeys ?? [] : result.results.flatMap((r) => r.ignoredContextKeys ?? []);
    return { decision: result.overallResult as Decision, ignoredContextKeys: [...new Set(ignored)] };
}

/** `decide()`, failing when the simulator dropped a context key the caller meant to be evaluated. */
export async function decideStrictly(principal: Principal, request: Request, resourcePolicy?: unknown): Promise<Decision> {
    const outcome = await decide(principal, request, resourcePolicy);
    if (outcome.ignoredContextKeys.length > 0) {
        throw new Error(`the simulator ignores ${outcome.ignoredContextKeys.join(", ")} for ${request.action} on ${request.resource}`);
    }
    return outcome.decision;
}

/**
 * `decide()` for requests whose context keys the simulator's data does not list for the action, and
 * would therefore drop: the generic `<provider>:sub` and `:aud` keys of web identity federation
 * (the Service Authorization Reference lists GitHub's own claims for `sts:AssumeRoleWithWebIdentity`,
 * not the two that AWS's GitHub guide tests) and KMS encryption context keys
 * (`kms:EncryptionContext:aws:s3:arn`). The documents and the request are validated with
 * `runSimulation` (which must not report an error); the decision is then taken by the same engine
 * without the context-key filter (`runUnsafeSimulation`), with the context exactly as given.
 */
export async function decideWithFullContext(principal: Principal, request: Request, resourcePolicy?: PolicyDocument): Promise<Decision> {
    const validated = await runSimulation(simulation(principal, request, resourcePolicy), {});
    if (validated.resultType === "error") {
        throw new Error(`cannot simulate ${request.action} on ${request.resource}: ${validated.errors.message}\n${JSON.stringify(validated.errors, null, 2)}`);
    }
    // The unvalidated entry point loads a resource policy without a name unless it comes as a
    // validated policy (`@cloud-copilot/iam-policy`'s ValidatedPolicy shape); it was validated above.
    const asValidated = resourcePolicy ? { __validated: true, policyDocument: resourcePolicy, metadata: { name: "resource" }, errors: [] } : undefined;
    return runUnsafeSimulation(simulation(principal, request, asValidated), {}) as Decision;
}

/** The claims of a GitHub Actions OIDC token that a role's trust policy can test. */
export interface WebIdentityClaims {
    /** `token.actions.githubusercontent.com:sub`, e.g. `repo:owner/name:environment:prod`; absent: not in the token. */
    sub?: string;
    aud?: string;
}

/**
 * Whether a web identity token with `claims`, presented by the OIDC provider `providerArn`, may
 * assume `roleArn` whose trust policy is `trust`: `sts:AssumeRoleWithWebIdentity` evaluated against
 * the trust policy as the role's resource policy, the way STS evaluates it.
 */
export async function assumeWithWebIdentity(
    trust: PolicyDocument,
    roleArn: string,
    providerArn: string,
    accountId: string,
    claims: WebIdentityClaims,
): Promise<Decision> {
    const context: Record<string, string> = {};
    const host = providerArn.slice(providerArn.indexOf("oidc-provider/") + "oidc-provider/".length);
    if (claims.sub !== undefined) {
        context[`${host}:sub`] = claims.sub;
    }
    if (claims.aud !== undefined) {
        context[`${host}:aud`] = claims.aud;
    }
    return decideWithFullContext({ arn: providerArn, accountId, identity: [] }, { action: "sts:AssumeRoleWithWebIdentity", resource: roleArn, context }, trust);
}
