// Errors. A ConvergenceError carries one of the protocol's error codes
// (docs/protocol.md, "Errors"); each code has its own subclass so that callers can
// test with instanceof or compare `code`. Errors found on the client's side before
// anything is sent (a value that does not fit its field) are ConvergenceErrors with
// the code the server would have answered. A stream the client cannot decode is a
// ProtocolError; a client used after close() throws ClientClosedError.

export const ErrorCode = {
  bad_frame: 1,
  frame_too_large: 2,
  unsupported_version: 3,
  auth_failed: 4,
  not_a_source: 5,
  unknown_schema: 6,
  bad_value: 7,
  bad_id: 8,
  unknown_subscription: 9,
  overloaded: 10,
  shutting_down: 11,
  source_taken_over: 12,
  handshake_required: 13,
  not_owner: 14,
} as const;

export type ErrorCodeName = keyof typeof ErrorCode;

const codeNames = new Map<number, ErrorCodeName>(
  Object.entries(ErrorCode).map(([name, code]) => [code, name as ErrorCodeName]),
);

export function errorCodeName(code: number): string {
  return codeNames.get(code) ?? `code_${code}`;
}

export class ConvergenceError extends Error {
  /** The protocol's error code (docs/protocol.md, "Errors"). */
  readonly code: number;
  /** The code's name as in docs/protocol.md, e.g. "bad_value". */
  readonly codeName: string;
  /** The op's seq, the request's req or the subscription's sub the error is about; 0n: the connection. */
  readonly ref: bigint;

  constructor(code: number, message: string, ref = 0n) {
    super(`${errorCodeName(code)} (${code}): ${message}`);
    this.name = new.target.name;
    this.code = code;
    this.codeName = errorCodeName(code);
    this.ref = ref;
  }
}

export class BadFrameError extends ConvergenceError {}
export class FrameTooLargeError extends ConvergenceError {}
export class UnsupportedVersionError extends ConvergenceError {}
export class AuthFailedError extends ConvergenceError {}
export class NotASourceError extends ConvergenceError {}
export class UnknownSchemaError extends ConvergenceError {}
export class BadValueError extends ConvergenceError {}
export class BadIdError extends ConvergenceError {}
export class UnknownSubscriptionError extends ConvergenceError {}
export class OverloadedError extends ConvergenceError {}
export class ShuttingDownError extends ConvergenceError {}
export class SourceTakenOverError extends ConvergenceError {}
export class HandshakeRequiredError extends ConvergenceError {}
/** A writer's HELLO to a read replica (`serve --follow`): write to `owner` instead. */
export class NotOwnerError extends ConvergenceError {
  /** The owner's HOST:PORT the message names ('' when the replica does not know it yet). */
  readonly owner: string;
  constructor(code: number, message: string, ref = 0n) {
    super(code, message, ref);
    const at = message.indexOf(ownerIsAt);
    this.owner = at < 0 ? '' : message.slice(at + ownerIsAt.length);
  }
}
const ownerIsAt = 'the owner is at ';

type ErrorClass = new (code: number, message: string, ref?: bigint) => ConvergenceError;

const classes = new Map<number, ErrorClass>([
  [ErrorCode.bad_frame, BadFrameError],
  [ErrorCode.frame_too_large, FrameTooLargeError],
  [ErrorCode.unsupported_version, UnsupportedVersionError],
  [ErrorCode.auth_failed, AuthFailedError],
  [ErrorCode.not_a_source, NotASourceError],
  [ErrorCode.unknown_schema, UnknownSchemaError],
  [ErrorCode.bad_value, BadValueError],
  [ErrorCode.bad_id, BadIdError],
  [ErrorCode.unknown_subscription, UnknownSubscriptionError],
  [ErrorCode.overloaded, OverloadedError],
  [ErrorCode.shutting_down, ShuttingDownError],
  [ErrorCode.source_taken_over, SourceTakenOverError],
  [ErrorCode.handshake_required, HandshakeRequiredError],
  [ErrorCode.not_owner, NotOwnerError],
]);

/** The typed error for an ERROR frame's code (ConvergenceError itself for a code this client does not know). */
export function errorFromCode(code: number, message: string, ref = 0n): ConvergenceError {
  const cls = classes.get(code) ?? ConvergenceError;
  return new cls(code, message, ref);
}

/** The server sent bytes this client cannot decode; `offset` is within the frame's payload. */
export class ProtocolError extends Error {
  readonly offset: number;
  constructor(message: string, offset = 0) {
    super(message);
    this.name = 'ProtocolError';
    this.offset = offset;
  }
}

/** The client was closed (by close(), or for good after a fatal error, which is the cause). */
export class ClientClosedError extends Error {
  constructor(message = 'client closed', options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ClientClosedError';
  }
}

/** The connection ended without an ERROR frame (reset, end of stream, refused). */
export class ConnectionLostError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConnectionLostError';
  }
}
