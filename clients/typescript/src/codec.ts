// The codec on its own, for tools and tests that speak frames directly.

export * from './frames.js';
export { Encoder, Reader } from './wire.js';
