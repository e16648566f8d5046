import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

import { parseCidr } from "../config";
import type { Context } from "../iam";
import type { FunctionNetwork } from "./pipelineFunction";

export type EndpointType = "Gateway" | "Interface";

/**
 * The VPC endpoints, one per AWS API that the functions' own code calls from their network
 * interfaces, and why. No NAT gateway exists, so this is everything the code can reach. Gateway
 * endpoints are free; an interface endpoint is billed per hour in every zone. The xtask cost model
 * (xtask/src/cost.rs) reads this table and MAX_ZONES from this file: keep one entry per line.
 */
export const VPC_ENDPOINTS: readonly { service: string; type: EndpointType; reason: string }[] = [
    { service: "s3", type: "Gateway", reason: "stream processor: PUT raw/ and quarantine/ objects; transformer: GET raw/, PUT and DELETE processed/; auditor: list and HEAD raw/ (pipeline-aws s3.rs)" },
    { service: "dynamodb", type: "Gateway", reason: "every function: the metadata item, the transformer's lease, the auditor's pending-index queries (pipeline-aws dynamodb.rs)" },
    { service: "secretsmanager", type: "Interface", reason: "transformer: GetSecretValue of the PII HMAC key, once per container (transformer main.rs)" },
    { service: "lambda", type: "Interface", reason: "auditor: Invoke of the transformer to re-drive a stuck raw object, a few per run at most (auditor lib.rs)" },
];

/**
 * Services a VPC function is often given an endpoint for that these functions never call from
 * their network interfaces: each would cost an interface endpoint in every zone for nothing.
 */
export const NOT_CALLED_FROM_THE_VPC: Readonly<Record<string, string>> = {
    "kinesis-streams": "the event-source mapping is the Lambda service: it reads the shards and passes the records in the invocation",
    sqs: "the on-failure records of the mapping and of asynchronous invocations are sent by the Lambda service",
    logs: "the functions write to stdout; the Lambda service delivers the lines to CloudWatch Logs",
    monitoring: "metrics are EMF log lines (pipeline-aws emf.rs), not PutMetricData calls",
    xray:
        "with active tracing Lambda itself records and sends the function's segments " +
        "(https://docs.aws.amazon.com/lambda/latest/dg/services-xray.html); the code has no X-Ray or OpenTelemetry exporter",
    kms: "S3, DynamoDB and Secrets Manager call KMS on the functions' behalf; the code never does",
    sts: "the execution role's credentials arrive in the environment; the SDK never calls STS",
};

/** Services with an endpoint of `type`, in table order. */
export function endpointServices(type: EndpointType): string[] {
    return VPC_ENDPOINTS.filter((e) => e.type === type).map((e) => e.service);
}

/** Private subnets, one per availability zone, at most this many zones. */
export const MAX_ZONES = 3;

const ipToString = (n: number): string => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");

/** The `index`-th subnet of `cidr` with `extraBits` more prefix bits (Terraform's `cidrsubnet`). */
export function subnetCidr(cidr: string, extraBits: number, index: number): string {
    const parsed = parseCidr(cidr);
    if (!parsed) {
        throw new Error(`not an IPv4 CIDR: ${cidr}`);
    }
    const prefix = parsed.prefix + extraBits;
    if (prefix > 28 || index < 0 || index >= 2 ** extraBits) {
        throw new Error(`cannot carve subnet ${index} of /${prefix} from ${cidr}`);
    }
    return `${ipToString(parsed.address + index * 2 ** (32 - prefix))}/${prefix}`;
}

/**
 * A VPC without internet access for the functions: private subnets in up to three zones, one
 * route table, the gateway and private-DNS interface endpoints of VPC_ENDPOINTS and nothing else.
 * The functions' security group may only reach HTTPS inside the VPC and the gateway endpoints'
 * prefix lists; the interface endpoints accept HTTPS from that group only.
 */
export class Network extends pulumi.ComponentResource {
    readonly vpc: aws.ec2.Vpc;
    readonly subnets: aws.ec2.Subnet[];
    readonly functionSecurityGroup: aws.ec2.SecurityGroup;
    readonly endpoints: aws.ec2.VpcEndpoint[] = [];
    readonly functionNetwork: FunctionNetwork;

    constructor(name: string, args: { ctx: Context; zones: string[] }, opts?: pulumi.ComponentResourceOptions) {
        super("eventpipe:pipeline:Network", name, {}, opts);
        const { ctx } = args;
        const cidr = ctx.env.network.vpc_cidr;
        if (!cidr) {
            throw new Error("network.vpc_cidr is required when network.vpc is on");
        }
        const zones = args.zones.slice(0, MAX_ZONES);
        if (zones.length < 2) {
            throw new Error(`region ${ctx.region} offers ${zones.length} availability zone(s); the functions need at least two`);
        }
        const parent = { parent: this };
        const prefix = ctx.extra.vpc;

        this.vpc = new aws.ec2.Vpc(
            `${name}-vpc`,
            { cidrBlock: cidr, enableDnsHostnames: true, enableDnsSupport: true, tags: { Name: prefix } },
            parent,
        );
        // The default security group of the VPC allows nothing.
        new aws.ec2.DefaultSecurityGroup(`${name}-default-sg`, { vpcId: this.vpc.id, tags: { Name: `${prefix}-default` } }, parent);

        const routeTable = new aws.ec2.RouteTable(`${name}-private`, { vpcId: this.vpc.id, tags: { Name: `${prefix}-private` } }, parent);
        this.subnets = zones.map((zone, i) => {
            const subnet = new aws.ec2.Subnet(
                `${name}-private-${i}`,
                {
                    vpcId: this.vpc.id,
                    availabilityZone: zone,
                    cidrBlock: subnetCidr(cidr, 4, i),
                    mapPublicIpOnLaunch: false,
                    tags: { Name: `${prefix}-private-${zone}` },
                },
                parent,
            );
            new aws.ec2.RouteTableAssociation(`${name}-private-${i}`, { subnetId: subnet.id, routeTableId: routeTable.id }, parent);
            return subnet;
        });

        const gateways = endpointServices("Gateway").map(
            (service) =>
                new aws.ec2.VpcEndpoint(
                    `${name}-${service}`,
                    {
                        vpcId: this.vpc.id,
                        serviceName: `com.amazonaws.${ctx.region}.${service}`,
                        vpcEndpointType: "Gateway",
                        routeTableIds: [routeTable.id],
                        tags: { Name: `${prefix}-${service}` },
                    },
                    parent,
                ),
        );
        this.endpoints.push(...gateways);

        this.functionSecurityGroup = new aws.ec2.SecurityGroup(
            `${name}-functions`,
            {
                name: `${prefix}-functions`,
                description: "Pipeline functions: HTTPS to the VPC endpoints only",
                vpcId: this.vpc.id,
                egress: [
                    { description: "Interface endpoints", protocol: "tcp", fromPort: 443, toPort: 443, cidrBlocks: [cidr] },
                    {
                        description: "S3 and DynamoDB gateway endpoints",
                        protocol: "tcp",
                        fromPort: 443,
                        toPort: 443,
                        prefixListIds: gateways.map((g) => g.prefixListId),
                    },
                ],
                tags: { Name: `${prefix}-functions` },
            },
            parent,
        );
        const endpointSecurityGroup = new aws.ec2.SecurityGroup(
            `${name}-endpoints`,
            {
                name: `${prefix}-endpoints`,
                description: "Interface endpoints: HTTPS from the pipeline functions",
                vpcId: this.vpc.id,
                ingress: [
                    {
                        description: "Pipeline functions",
                        protocol: "tcp",
                        fromPort: 443,
                        toPort: 443,
                        securityGroups: [this.functionSecurityGroup.id],
                    },
                ],
                egress: [],
                tags: { Name: `${prefix}-endpoints` },
            },
            parent,
        );

        for (const service of endpointServices("Interface")) {
            this.endpoints.push(
                new aws.ec2.VpcEndpoint(
                    `${name}-${service}`,
                    {
                        vpcId: this.vpc.id,
                        serviceName: `com.amazonaws.${ctx.region}.${service}`,
                        vpcEndpointType: "Interface",
                        privateDnsEnabled: true,
                        subnetIds: this.subnets.map((s) => s.id),
                        securityGroupIds: [endpointSecurityGroup.id],
                        tags: { Name: `${prefix}-${service}` },
                    },
                    parent,
                ),
            );
        }

        this.functionNetwork = {
            subnetIds: this.subnets.map((s) => s.id),
            subnetArns: this.subnets.map((s) => s.arn),
            securityGroupId: this.functionSecurityGroup.id,
            securityGroupArn: this.functionSecurityGroup.arn,
        };

        this.registerOutputs({ vpcId: this.vpc.id, subnetIds: this.functionNetwork.subnetIds });
    }
}
