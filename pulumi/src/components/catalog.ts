import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

import type { Context } from "../iam";
import contract from "../contract.json";
import { PROCESSED_PREFIX } from "../names";

export const PARTITION_KEYS: readonly { name: string; type: string; comment: string }[] = [
    { name: "event_type", type: "string", comment: "Event type (injected projection: filter on it)" },
    { name: "dt", type: "string", comment: "UTC date, yyyy-MM-dd" },
    { name: "hour", type: "int", comment: "UTC hour, 00-23" },
];

/**
 * The columns of the processed Parquet files (`pipeline_core::parquet_io::COLUMNS`, through the
 * generated contract) in Glue types. `event_type` is in the files too but is the table's partition
 * key here: Hive tables cannot have a column and a partition key of the same name, and Athena reads
 * Parquet by name.
 */
export const PARQUET_COLUMNS: readonly { name: string; type: string; comment: string }[] = contract.parquet.columns.filter(
    (c) => !PARTITION_KEYS.some((p) => p.name === c.name),
);

/** Where partitions live; `${...}` are Athena projection placeholders, not template literals. */
export function locationTemplate(processedBucket: string): string {
    return `s3://${processedBucket}/${PROCESSED_PREFIX}event_type=\${event_type}/dt=\${dt}/hour=\${hour}/`;
}

/** Table parameters: Parquet, and partition projection so that no crawler or MSCK is needed. */
export function tableParameters(processedBucket: string): Record<string, string> {
    return {
        EXTERNAL: "TRUE",
        classification: "parquet",
        "parquet.compression": "ZSTD",
        "projection.enabled": "true",
        "projection.event_type.type": "injected",
        "projection.dt.type": "date",
        "projection.dt.format": "yyyy-MM-dd",
        "projection.dt.range": "2024-01-01,NOW+1DAYS",
        "projection.dt.interval": "1",
        "projection.dt.interval.unit": "DAYS",
        "projection.hour.type": "integer",
        "projection.hour.range": "0,23",
        "projection.hour.digits": "2",
        "storage.location.template": locationTemplate(processedBucket),
    };
}

/** The Glue database and table over the processed Parquet objects, queryable from Athena. */
export class Catalog extends pulumi.ComponentResource {
    readonly database: aws.glue.CatalogDatabase;
    readonly table: aws.glue.CatalogTable;

    constructor(name: string, args: { ctx: Context }, opts?: pulumi.ComponentResourceOptions) {
        super("eventpipe:pipeline:Catalog", name, {}, opts);
        const { ctx } = args;
        const bucket = ctx.names.processed_bucket;

        this.database = new aws.glue.CatalogDatabase(
            `${name}-database`,
            { name: ctx.extra.glueDatabase, description: `Processed events of ${ctx.env.project} ${ctx.env.name}` },
            { parent: this },
        );

        this.table = new aws.glue.CatalogTable(
            `${name}-events`,
            {
                name: ctx.extra.glueTable,
                databaseName: this.database.name,
                description: "Processed events (Parquet, schema v1), partitioned by event_type, dt and hour",
                tableType: "EXTERNAL_TABLE",
                parameters: tableParameters(bucket),
                partitionKeys: PARTITION_KEYS.map((k) => ({ ...k })),
                storageDescriptor: {
                    location: `s3://${bucket}/${PROCESSED_PREFIX}`,
                    inputFormat: "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                    outputFormat: "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                    serDeInfo: {
                        name: "parquet",
                        serializationLibrary: "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
                        parameters: { "serialization.format": "1" },
                    },
                    columns: PARQUET_COLUMNS.map((c) => ({ ...c })),
                },
            },
            { parent: this },
        );

        this.registerOutputs({ database: this.database.name, table: this.table.name });
    }
}
