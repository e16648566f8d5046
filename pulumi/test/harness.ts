// Runs the program against Pulumi's mock monitor and records every resource it registers.

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { FUNCTION_KEYS, loadArtifacts, sha256File, type Artifacts } from "../src/artifacts";
import { loadEnvironment, type Environment } from "../src/config";
import { createPipeline } from "../src/pipeline";
import type { ResourceLike } from "../policy/rules";
import { runUnderMocks, TEST_IDS, type Registered } from "../authz/mocks";

export type { Registered };

export const ACCOUNT_ID = "123456789012";
export const PROJECT = "eventpipe";
export const GIT_SHA = "0123456789abcdef0123456789abcdef01234567";

/** A valid, empty zip archive (an end-of-central-directory record) whose comment makes it unique. */
export function emptyZip(comment: string): Buffer {
    const c = Buffer.from(comment, "utf8");
    const eocd = Buffer.alloc(22);
    eocd.writeUInt32LE(0x06054b50, 0);
    eocd.writeUInt16LE(c.length, 20);
    return Buffer.concat([eocd, c]);
}

const tempDirs: string[] = [];
process.on("exit", () => {
    for (const dir of tempDirs) {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

/** A fresh temporary directory, removed when the test process exits. */
export function tempDir(prefix: string): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    tempDirs.push(dir);
    return dir;
}

/** Writes a zip per function and their manifest into a fresh directory; returns the manifest path. */
export function writeFixtureManifest(opts: { gitSha?: string; mutate?: (doc: any, dir: string) => void } = {}): string {
    const dir = tempDir("eventpipe-artifacts-");
    const functions = FUNCTION_KEYS.map((fn) => {
        const zip = `${fn}.zip`;
        fs.writeFileSync(path.join(dir, zip), emptyZip(`${fn} fixture`));
        return { function: fn, arch: "arm64", zip, sha256: sha256File(path.join(dir, zip)), size: fs.statSync(path.join(dir, zip)).size };
    });
    const doc = { git_sha: opts.gitSha ?? GIT_SHA, functions };
    opts.mutate?.(doc, dir);
    const manifest = path.join(dir, "manifest.json");
    fs.writeFileSync(manifest, JSON.stringify(doc, null, 2));
    return manifest;
}

let fixtureArtifacts: Artifacts | undefined;
export function artifacts(): Artifacts {
    fixtureArtifacts ??= loadArtifacts(writeFixtureManifest());
    return fixtureArtifacts;
}

export interface Deployment {
    env: Environment;
    resources: Registered[];
    outputs: Record<string, unknown>;
}

/**
 * Runs `createPipeline` for a stack under mocks. `program` replaces the default program (for
 * tests of `run()`); the environment is read from the repository's files.
 */
export async function deploy(stack: string, program?: () => Promise<Record<string, unknown>>): Promise<Deployment> {
    const env = loadEnvironment(stack);
    const { resources, outputs } = await runUnderMocks(
        PROJECT,
        stack,
        { accountId: ACCOUNT_ID, region: env.region, ids: TEST_IDS },
        program ?? (async () => (await createPipeline({ env, artifacts: artifacts(), gitSha: GIT_SHA })) as unknown as Record<string, unknown>),
    );
    return { env, resources, outputs };
}

export function ofType(d: Deployment, type: string): Registered[] {
    return d.resources.filter((r) => r.type === type);
}

export function one(d: Deployment, type: string, predicate: (r: Registered) => boolean = () => true): Registered {
    const found = ofType(d, type).filter(predicate);
    if (found.length !== 1) {
        throw new Error(`expected one ${type}, found ${found.length}: ${found.map((r) => r.name).join(", ")}`);
    }
    return found[0] as Registered;
}

/** Registered custom resources in the form the policies take (inputs plus computed outputs). */
export function asPolicyResources(d: Deployment): ResourceLike[] {
    return d.resources
        .filter((r) => r.custom && !r.type.startsWith("pulumi:providers:"))
        .map((r) => ({ type: r.type, name: r.name, urn: r.urn, props: r.state }));
}

export function statements(policyJson: string): any[] {
    return JSON.parse(policyJson).Statement;
}
