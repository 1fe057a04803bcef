// Lint: typescript-eslint's recommended rules plus the layering rule. The pure core (wire framing,
// scheduling choices, heartbeat bookkeeping, API schemas, planners) must not import anything that
// does I/O, so it stays testable with plain values and no sockets, clusters or files.
import tseslint from "typescript-eslint";

const IO_MODULES = [
  "zeromq", "zeromq/*", "prom-client", "ssh2", "@kubernetes/client-node",
  "node:net", "node:fs", "node:fs/promises", "node:http", "node:https", "node:child_process",
  "node:dgram", "node:dns", "node:tls", "net", "fs", "fs/promises", "http", "https", "child_process",
];
const PURE_CORE = [
  "src/protocol/**", "src/controller/core/**", "src/api/**", "src/operator/core/**", "src/backends/*/core/**", "src/connect/core/**",
];

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", ".cache/**", "charts/**", "native/**"] },
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
    },
  },
  {
    files: PURE_CORE,
    rules: {
      "no-restricted-imports": ["error", {
        paths: IO_MODULES.filter((m) => !m.includes("*")).map((name) => ({
          name, message: "pure core: pass I/O in through an interface instead",
        })),
        patterns: [{ group: ["zeromq/*"], message: "pure core: no zeromq" }],
      }],
    },
  },
);
