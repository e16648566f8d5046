import { strict as assert } from "node:assert";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

import { ArtifactError, artifactsFromEnv, hexToBase64, loadArtifacts, MANIFEST_ENV_VAR } from "../src/artifacts";
import { GIT_SHA, writeFixtureManifest } from "./harness";

function fails(mutate: (doc: any, dir: string) => void, pattern: RegExp): void {
    const manifest = writeFixtureManifest({ mutate });
    assert.throws(() => loadArtifacts(manifest), (err: unknown) => {
        assert.ok(err instanceof ArtifactError, String(err));
        assert.match(err.message, pattern);
        assert.ok(err.message.includes(manifest), "the message names the manifest");
        return true;
    });
}

describe("artifact manifest", () => {
    it("resolves every function with its digest, size and Lambda code hash", () => {
        const manifest = writeFixtureManifest();
        const a = loadArtifacts(manifest);
        assert.equal(a.gitSha, GIT_SHA);
        assert.deepEqual(Object.keys(a.functions).sort(), ["auditor", "stream-processor", "transformer"]);
        for (const fn of ["stream-processor", "transformer", "auditor"] as const) {
            const art = a.functions[fn];
            const bytes = fs.readFileSync(art.zipPath);
            const digest = createHash("sha256").update(bytes).digest();
            assert.equal(art.zipPath, path.join(path.dirname(manifest), `${fn}.zip`));
            assert.equal(art.sha256, digest.toString("hex"));
            assert.equal(art.sourceCodeHash, digest.toString("base64"));
            assert.equal(art.size, bytes.length);
            assert.equal(art.arch, "arm64");
        }
    });

    it("converts hex digests to Lambda's base64 CodeSha256", () => {
        // sha256("") in both forms.
        assert.equal(
            hexToBase64("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        );
    });

    it("refuses a zip whose bytes differ from the manifest", () => {
        fails((_doc, dir) => fs.appendFileSync(path.join(dir, "transformer.zip"), "tampered"), /the zip of `transformer` has \d+ bytes but the manifest says/);
        fails((doc) => {
            doc.functions[0].sha256 = "0".repeat(64);
        }, /the zip of `stream-processor` does not match the manifest: sha256 is [0-9a-f]{64}, the manifest says 0{64}/);
    });

    it("refuses incomplete or malformed manifests", () => {
        fails((doc) => doc.functions.pop(), /no entry for auditor$/);
        fails((doc) => (doc.functions = doc.functions.filter((f: any) => f.function === "stream-processor")), /no entry for transformer, auditor$/);
        fails((doc) => doc.functions.push({ ...doc.functions[0] }), /`stream-processor` is listed twice/);
        fails((doc) => (doc.functions[0].function = "producer"), /`function` must be one of stream-processor, transformer, auditor, not "producer"/);
        fails((doc) => (doc.functions[1].arch = "x86_64"), /built for "x86_64"; the functions run on arm64/);
        fails((doc) => (doc.functions[0].zip = "../stream-processor.zip"), /relative to the manifest's directory, without `\.\.`/);
        fails((doc) => (doc.functions[0].zip = "/srv/artifacts/stream-processor.zip"), /relative to the manifest's directory/);
        fails((doc) => (doc.functions[0].sha256 = "ABC"), /`sha256` must be 64 lower-case hex digits/);
        fails((doc) => (doc.functions[0].size = "12"), /`size` must be a positive integer/);
        fails((doc) => (doc.functions[0].zip = "missing.zip"), /the zip of `stream-processor` is missing/);
        fails((doc) => delete doc.git_sha, /`git_sha` must be a non-empty string/);
        fails((doc) => (doc.functions = {}), /`functions` must be an array/);
    });

    it("ignores keys it does not know, so the packager can add some", () => {
        const manifest = writeFixtureManifest({
            mutate: (doc) => {
                doc.built_at = "2026-01-01T00:00:00Z";
                doc.functions[0].rustc = "1.90.0";
            },
        });
        assert.equal(loadArtifacts(manifest).functions["stream-processor"].arch, "arm64");
    });

    it("reports a missing file and a missing environment variable clearly", () => {
        assert.throws(() => loadArtifacts("/nonexistent/manifest.json"), /artifact manifest \/nonexistent\/manifest.json: .*cargo xtask package/);
        assert.throws(() => artifactsFromEnv({}), new RegExp(`${MANIFEST_ENV_VAR} is not set`));
        const manifest = writeFixtureManifest();
        assert.equal(artifactsFromEnv({ [MANIFEST_ENV_VAR]: manifest }).manifestPath, manifest);
    });
});
