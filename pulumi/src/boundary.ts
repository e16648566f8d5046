// Environment classes and the permissions boundary every role of the pipeline carries.
//
// The bootstrap program (pulumi/bootstrap) creates one boundary policy per environment class and the
// deployer role of that class may create a role only when it carries that boundary. This module is
// the one definition of the class of an environment and of the boundary's name, for the pipeline
// program (every `aws.iam.Role` sets `permissionsBoundary: permissionsBoundaryArn(...)`) and for the
// bootstrap program alike.

import { isPreview, type Environment } from "./config";
import { namePrefix } from "./names";

/** The environment classes that have a deployer role, a state prefix and a boundary in AWS. */
export const DEPLOYED_CLASSES = ["dev", "prod", "preview"] as const;
export type DeployedClass = (typeof DEPLOYED_CLASSES)[number];

/** Every deployed environment belongs to one class: `dev`, `prod`, and every `pr-<n>` to `preview`. */
export function environmentClass(envName: string): DeployedClass {
    if (envName === "dev" || envName === "prod") {
        return envName;
    }
    if (isPreview(envName)) {
        return "preview";
    }
    throw new Error(`environment \`${envName}\` belongs to no deployed class: use \`dev\`, \`prod\` or \`pr-<number>\``);
}

/**
 * The environment names of a class as an IAM wildcard: `dev`, `prod`, `pr-*`. With `namePrefix()`
 * it gives the names of every resource of the class (`eventpipe-pr-*-events`, ...).
 */
export function environmentNamePattern(envClass: DeployedClass): string {
    return envClass === "preview" ? "pr-*" : envClass;
}

/** `<project>-<class>-boundary`: the managed policy that bounds every role of the class. */
export function permissionsBoundaryName(project: string, envClass: DeployedClass): string {
    return `${project}-${envClass}-boundary`;
}

/** The ARN of a class's permissions boundary. */
export function classBoundaryArn(project: string, envClass: DeployedClass, accountId: string, partition: string): string {
    return `arn:${partition}:iam::${accountId}:policy/${permissionsBoundaryName(project, envClass)}`;
}

/**
 * The ARN of the permissions boundary that every role of `env` must carry: give it to every
 * `aws.iam.Role` as `permissionsBoundary`. The policy is created by the bootstrap stack of the
 * account, not by the pipeline program, so no deployer can edit it. `local` runs in the local
 * emulator, which has no bootstrap stack and so no boundary: undefined.
 */
export function permissionsBoundaryArn(env: Pick<Environment, "project" | "name">, accountId: string, partition: string): string | undefined {
    if (env.name === "local") {
        return undefined;
    }
    return classBoundaryArn(env.project, environmentClass(env.name), accountId, partition);
}

/** `<project>-<class pattern>`: the first components of every name in a class (`eventpipe-pr-*`). */
export function classNamePrefix(project: string, envClass: DeployedClass): string {
    return namePrefix({ project, name: environmentNamePattern(envClass) });
}
