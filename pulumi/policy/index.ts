// The CrossGuard policy pack of the eventpipe stacks. Every policy is mandatory: a preview or an
// update that violates one fails. The rules themselves are pure functions in ./rules, which the
// tests also run over every resource of each stack flavour.
//
// Used by the deployment commands as `pulumi preview|up --policy-pack pulumi/policy`.

import { PolicyPack, type PolicyResource, type ResourceValidationPolicy, type StackValidationPolicy } from "@pulumi/policy";

import { RESOURCE_POLICIES, STACK_POLICIES, type ResourceLike } from "./rules";

const asResource = (r: { type: string; name: string; urn: string; props: Record<string, unknown> }): ResourceLike => ({
    type: r.type,
    name: r.name,
    urn: r.urn,
    props: r.props,
});

const resourcePolicies: ResourceValidationPolicy[] = RESOURCE_POLICIES.map((policy) => ({
    name: policy.name,
    description: policy.description,
    enforcementLevel: "mandatory",
    validateResource: (args, reportViolation) => {
        for (const message of policy.validate(asResource(args))) {
            reportViolation(message);
        }
    },
}));

const stackPolicies: StackValidationPolicy[] = STACK_POLICIES.map((policy) => ({
    name: policy.name,
    description: policy.description,
    enforcementLevel: "mandatory",
    validateStack: (args, reportViolation) => {
        const resources = args.resources.map((r: PolicyResource) => asResource(r));
        for (const v of policy.validate(resources)) {
            reportViolation(v.message, v.resource?.urn);
        }
    },
}));

new PolicyPack("eventpipe-guardrails", {
    policies: [...resourcePolicies, ...stackPolicies],
});
