// The artifact manifest written by `cargo xtask package`: the one build of the functions that every
// stack deploys. The program never builds anything; it deploys the zips the manifest names and
// refuses any zip whose bytes are not the ones the manifest describes.
//
// Contract (`PIPELINE_ARTIFACT_MANIFEST` is the path of this JSON file):
//
//   {
//     "git_sha": "<commit the zips were built from>",
//     "functions": [
//       { "function": "stream-processor", "arch": "arm64", "zip": "stream-processor.zip",
//         "sha256": "<64 lower-case hex>", "size": <bytes> },
//       { "function": "transformer", ... },
//       { "function": "auditor", ... }
//     ]
//   }
//
// `zip` is relative to the manifest's directory. Unknown keys are ignored, so the packager can add
// fields without breaking deployments.

import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

export const MANIFEST_ENV_VAR = "PIPELINE_ARTIFACT_MANIFEST";
export const FUNCTION_KEYS = ["stream-processor", "transformer", "auditor"] as const;
export type FunctionKey = (typeof FUNCTION_KEYS)[number];
/** The only architecture the functions are built and deployed for. */
export const ARCHITECTURE = "arm64";

export interface Artifact {
    function: FunctionKey;
    arch: typeof ARCHITECTURE;
    /** Absolute path of the zip. */
    zipPath: string;
    /** Lower-case hex SHA-256 of the zip. */
    sha256: string;
    /** Base64 of the SHA-256 bytes: Lambda's `CodeSha256`, used as `sourceCodeHash`. */
    sourceCodeHash: string;
    size: number;
}

export interface Artifacts {
    manifestPath: string;
    gitSha: string;
    functions: Record<FunctionKey, Artifact>;
}

export class ArtifactError extends Error {
    constructor(message: string) {
        super(message);
        this.name = "ArtifactError";
    }
}

/** Lambda's `CodeSha256` form of a hex digest. */
export function hexToBase64(hex: string): string {
    return Buffer.from(hex, "hex").toString("base64");
}

export function sha256File(file: string): string {
    const hash = createHash("sha256");
    const fd = fs.openSync(file, "r");
    try {
        const buf = Buffer.allocUnsafe(1 << 20);
        let n: number;
        while ((n = fs.readSync(fd, buf, 0, buf.length, null)) > 0) {
            hash.update(buf.subarray(0, n));
        }
    } finally {
        fs.closeSync(fd);
    }
    return hash.digest("hex");
}

function isRecord(v: unknown): v is Record<string, unknown> {
    return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Reads, checks and resolves a manifest; every zip is hashed and compared with the manifest. */
export function loadArtifacts(manifestPath: string): Artifacts {
    const where = `artifact manifest ${manifestPath}`;
    let doc: unknown;
    try {
        doc = JSON.parse(fs.readFileSync(manifestPath, "utf8"));
    } catch (err) {
        throw new ArtifactError(`${where}: ${(err as Error).message} (build it with \`cargo xtask package --arch arm64\`)`);
    }
    if (!isRecord(doc)) {
        throw new ArtifactError(`${where}: expected a JSON object`);
    }
    const gitSha = doc.git_sha;
    if (typeof gitSha !== "string" || gitSha.trim() === "") {
        throw new ArtifactError(`${where}: \`git_sha\` must be a non-empty string`);
    }
    if (!Array.isArray(doc.functions)) {
        throw new ArtifactError(`${where}: \`functions\` must be an array`);
    }
    const dir = path.dirname(path.resolve(manifestPath));
    const found = new Map<FunctionKey, Artifact>();
    doc.functions.forEach((entry: unknown, i: number) => {
        const at = `${where}: functions[${i}]`;
        if (!isRecord(entry)) {
            throw new ArtifactError(`${at}: expected an object`);
        }
        const fn = entry.function;
        if (typeof fn !== "string" || !(FUNCTION_KEYS as readonly string[]).includes(fn)) {
            throw new ArtifactError(`${at}: \`function\` must be one of ${FUNCTION_KEYS.join(", ")}, not ${JSON.stringify(fn)}`);
        }
        const key = fn as FunctionKey;
        if (found.has(key)) {
            throw new ArtifactError(`${at}: \`${key}\` is listed twice`);
        }
        if (entry.arch !== ARCHITECTURE) {
            throw new ArtifactError(`${at}: \`${key}\` is built for ${JSON.stringify(entry.arch)}; the functions run on ${ARCHITECTURE}`);
        }
        const zip = entry.zip;
        if (typeof zip !== "string" || zip === "" || path.isAbsolute(zip) || zip.split(/[\\/]/).includes("..")) {
            throw new ArtifactError(`${at}: \`zip\` must be a path relative to the manifest's directory, without \`..\``);
        }
        const sha256 = entry.sha256;
        if (typeof sha256 !== "string" || !/^[0-9a-f]{64}$/.test(sha256)) {
            throw new ArtifactError(`${at}: \`sha256\` must be 64 lower-case hex digits`);
        }
        const size = entry.size;
        if (typeof size !== "number" || !Number.isSafeInteger(size) || size <= 0) {
            throw new ArtifactError(`${at}: \`size\` must be a positive integer`);
        }
        const zipPath = path.join(dir, zip);
        let stat: fs.Stats;
        try {
            stat = fs.statSync(zipPath);
        } catch {
            throw new ArtifactError(`${where}: the zip of \`${key}\` is missing: ${zipPath}`);
        }
        if (!stat.isFile()) {
            throw new ArtifactError(`${where}: the zip of \`${key}\` is not a file: ${zipPath}`);
        }
        if (stat.size !== size) {
            throw new ArtifactError(`${where}: the zip of \`${key}\` has ${stat.size} bytes but the manifest says ${size}: ${zipPath}`);
        }
        const actual = sha256File(zipPath);
        if (actual !== sha256) {
            throw new ArtifactError(
                `${where}: the zip of \`${key}\` does not match the manifest: sha256 is ${actual}, the manifest says ${sha256} ` +
                    `(${zipPath}); deploy only what \`cargo xtask package\` produced`,
            );
        }
        found.set(key, { function: key, arch: ARCHITECTURE, zipPath, sha256, sourceCodeHash: hexToBase64(sha256), size });
    });
    const missing = FUNCTION_KEYS.filter((k) => !found.has(k));
    if (missing.length > 0) {
        throw new ArtifactError(`${where}: no entry for ${missing.join(", ")}`);
    }
    return {
        manifestPath: path.resolve(manifestPath),
        gitSha: gitSha.trim(),
        functions: Object.fromEntries(found) as Record<FunctionKey, Artifact>,
    };
}

/** The manifest named by `PIPELINE_ARTIFACT_MANIFEST`. */
export function artifactsFromEnv(env: NodeJS.ProcessEnv = process.env): Artifacts {
    const manifest = env[MANIFEST_ENV_VAR];
    if (!manifest || manifest.trim() === "") {
        throw new ArtifactError(
            `${MANIFEST_ENV_VAR} is not set: point it at the manifest.json written by \`cargo xtask package --arch arm64\``,
        );
    }
    return loadArtifacts(manifest);
}
