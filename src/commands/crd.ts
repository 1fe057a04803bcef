/**
 * `ipp-operator crd`: print the EngineCluster CustomResourceDefinition generated from the API
 * schemas (YAML, or JSON with --json), e.g. `ipp-operator crd | kubectl apply -f -`.
 */
import { engineClusterCrd, renderCrdYaml } from "../crd/generate.ts";

const HELP = `usage: ipp-operator crd [--json]

Print the EngineCluster CustomResourceDefinition (ipp.dev/v1alpha1) generated from the API schemas.

options:
  --json     print JSON instead of YAML
  -h, --help show this help
`;

export async function run(argv: string[]): Promise<number> {
  let json = false;
  for (const arg of argv) {
    if (arg === "-h" || arg === "--help") { process.stdout.write(HELP); return 0; }
    if (arg === "--json") { json = true; continue; }
    process.stderr.write(`ipp-operator crd: unknown option '${arg}'\n\n${HELP}`);
    return 2;
  }
  process.stdout.write(json ? JSON.stringify(engineClusterCrd(), null, 2) + "\n" : renderCrdYaml());
  return 0;
}
