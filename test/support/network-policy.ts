/**
 * NetworkPolicy ingress semantics for tests, as the networking.k8s.io/v1 API defines them: a
 * connection to a selected pod on `port` is admitted when some ingress rule lists the port (or
 * lists no ports) and some peer of its `from` matches the source (or `from` is empty). A peer with
 * only podSelector matches pods of the policy's namespace; only namespaceSelector, every pod of
 * the matching namespaces; both, pods matching both. Sources outside the cluster match only rules
 * without `from`. Selectors: matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist),
 * ANDed; anything else is refused, so the evaluator can't be silently wrong about a policy it
 * doesn't understand.
 */
type Labels = Record<string, string>;
interface Expression { key: string; operator: string; values?: string[] }
interface Selector { matchLabels?: Labels; matchExpressions?: Expression[] }
interface Peer { podSelector?: Selector; namespaceSelector?: Selector; ipBlock?: unknown }
interface Rule { from?: Peer[]; ports?: Array<{ port?: number | string; protocol?: string; endPort?: number }> }
export interface NetworkPolicyLike { metadata: { namespace?: string }; spec: { ingress?: Rule[]; policyTypes?: string[] } }

export type Source = { pod: { namespace: string; namespaceLabels: Labels; labels: Labels } } | "outside";

function selects(sel: Selector | undefined, labels: Labels): boolean {
  if (sel === undefined) return true;
  const expression = (e: Expression): boolean => {
    const has = Object.prototype.hasOwnProperty.call(labels, e.key);
    switch (e.operator) {
      case "In": return has && (e.values ?? []).includes(labels[e.key]!);
      case "NotIn": return !has || !(e.values ?? []).includes(labels[e.key]!);
      case "Exists": return has;
      case "DoesNotExist": return !has;
      default: throw new Error(`matchExpressions operator ${e.operator} is not evaluated here`);
    }
  };
  return Object.entries(sel.matchLabels ?? {}).every(([k, v]) => labels[k] === v) && (sel.matchExpressions ?? []).every(expression);
}

function peerMatches(peer: Peer, policyNamespace: string, source: Source): boolean {
  if (peer.ipBlock !== undefined) throw new Error("ipBlock peers are not evaluated here");
  if (source === "outside") return false;
  const { pod } = source;
  if (peer.namespaceSelector === undefined) return pod.namespace === policyNamespace && selects(peer.podSelector, pod.labels);
  return selects(peer.namespaceSelector, pod.namespaceLabels) && selects(peer.podSelector, pod.labels);
}

export function admits(np: NetworkPolicyLike, source: Source, port: number): boolean {
  if (!(np.spec.policyTypes ?? ["Ingress"]).includes("Ingress")) return true;
  const ns = np.metadata.namespace ?? "default";
  return (np.spec.ingress ?? []).some((rule) => {
    const portOk = rule.ports === undefined || rule.ports.length === 0 || rule.ports.some((p) => {
      if (typeof p.port !== "number") throw new Error("named ports are not evaluated here");
      return (p.protocol ?? "TCP") === "TCP" && (p.port === port || (p.endPort !== undefined && port >= p.port && port <= p.endPort));
    });
    if (!portOk) return false;
    return rule.from === undefined || rule.from.length === 0 || rule.from.some((peer) => peerMatches(peer, ns, source));
  });
}
