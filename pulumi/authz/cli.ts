// `ts-node authz/cli.ts render [--check]`: writes (or checks) the committed renderings of each
// environment's policies for the local emulator (`authz/local/<env>.json`).

import { writeLocalModels } from "./render";

async function main(argv: string[]): Promise<number> {
    const [command, ...rest] = argv;
    switch (command) {
        case "render": {
            const check = rest.includes("--check");
            const stale = await writeLocalModels(check);
            for (const file of stale) {
                console.error(`${check ? "stale" : "wrote"} ${file}`);
            }
            if (check && stale.length > 0) {
                console.error("the program's policies changed: run `npm run authz:render` in pulumi/ and commit authz/local/");
                return 1;
            }
            return 0;
        }
        default:
            console.error("usage: cli.ts render [--check]");
            return 2;
    }
}

main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
        console.error(err instanceof Error ? err.stack ?? err.message : String(err));
        process.exit(1);
    },
);
