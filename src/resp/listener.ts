/**
 * The Redis port: a second listener on the node, sharing its IO loop,
 * routing, rings and shards with the native protocol.
 */
import type { PiccoloNode } from "../io/server.js";
import { RespConnection } from "./connection.js";
import { PubSubHub } from "./pubsub.js";
import type { RespHost, RespSession } from "./request.js";

export async function startResp(
  node: PiccoloNode,
  port: number,
  nativePort: number,
  persistence: RespHost["persistence"] = null,
): Promise<number> {
  const sessions = new Set<RespConnection>();
  const host: RespHost & { port: number } = {
    dispatcher: node.dispatcher,
    maxValueBytes: node.maxValueBytes,
    auth: node.auth,
    persistence,
    port,
    nativePort,
    sessions: (): Iterable<RespSession> => sessions,
    pubsub: new PubSubHub(node.dispatcher, (level, message, detail) => node.log(level, message, detail)),
    stats: { commands: 0, connectionsReceived: 0, rejectedCalls: 0 },
  };
  // A PUBLISH made on another member of the cluster reaches this member's subscribers too.
  node.onPeerPublish = (channel, message) => {
    host.pubsub.publish(channel, message);
  };
  host.port = await node.listen(
    port,
    (socket) => {
      const conn = new RespConnection(socket, node, host);
      sessions.add(conn);
      host.stats.connectionsReceived++;
      socket.once("close", () => {
        sessions.delete(conn);
        host.pubsub.drop(conn);
      });
      return conn;
    },
    "the Redis port, --resp-port",
  );
  return host.port;
}
