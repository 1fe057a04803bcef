/**
 * ipp-operator: one CLI, one subcommand per process. Each subcommand lives in
 * src/commands/<name>.ts and exports `run(argv): Promise<number>` (the exit code); only this
 * file calls process.exit.
 */
const SUBCOMMANDS: Record<string, string> = {
  local: "run a controller in-process with N ipengines under a local mpiexec (the embedded default)",
  controller: "run the ipyparallel-compatible controller (accepts ipcontroller's flags)",
  operator: "run the Kubernetes operator (reconciles EngineClusters)",
  connect: "write a cluster's client connection file into an ipyparallel profile (from its Secret, with your credentials)",
  crd: "print the EngineCluster CustomResourceDefinition (YAML) generated from the API schemas",
};

function usage(): string {
  const rows = Object.entries(SUBCOMMANDS).map(([name, what]) => `  ${name.padEnd(11)} ${what}`);
  return `usage: ipp-operator <command> [options]\n\ncommands:\n${rows.join("\n")}\n\nRun 'ipp-operator <command> --help' for a command's options.\n`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  if (!(name in SUBCOMMANDS)) {
    process.stderr.write(`ipp-operator: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  const mod = (await import(`./commands/${name}.ts`)) as { run(argv: string[]): Promise<number> };
  return mod.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    process.stderr.write(`ipp-operator: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
