// convergence client for Node.js and browsers (protocol v1, docs/protocol.md): TCP in
// Node.js, WebSocket in both.

export { Client, parseServers, type ClientOptions, type QueryResult, type SchemaRef, type SubscribeOptions } from './client.js';
export { Subscription, type Resumed, type SnapshotEnd, type SubscriptionEvent } from './subscription.js';
export { Change, SnapshotEntry, type ChangeKind, type Claim } from './frames.js';
export { Schema, type Field, type FieldType, type Id, type Value, type Values } from './schema.js';
export * from './errors.js';
export {
  tcpConnector,
  websocketConnector,
  FrameSplitter,
  type Connector,
  type Transport,
  type TransportHandlers,
  type TcpOptions,
  type WebSocketOptions,
  type WebSocketLike,
  type WebSocketConstructor,
} from './transport.js';
export * as codec from './codec.js';
