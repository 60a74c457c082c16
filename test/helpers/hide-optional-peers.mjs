// `node --import ./test/helpers/hide-optional-peers.mjs`: makes the optional peers of nestjs-redis-lock
// (prom-client, @opentelemetry/api, @nestjs/terminus, @nestjs/event-emitter) unresolvable, as in an app
// that did not install them. Register it after any other loader (the last registered hook runs first).
import { register } from 'node:module';

const HIDDEN = ['prom-client', '@opentelemetry/api', '@nestjs/terminus', '@nestjs/event-emitter'];

const hook = `
const hidden = new Set(${JSON.stringify(HIDDEN)});
export async function resolve(specifier, context, next) {
  const parts = specifier.split('/');
  const bare = specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
  if (hidden.has(bare)) {
    const error = new Error("Cannot find package '" + specifier + "' (hidden by test/helpers/hide-optional-peers.mjs)");
    error.code = 'ERR_MODULE_NOT_FOUND';
    throw error;
  }
  return next(specifier, context);
}
`;
register(`data:text/javascript,${encodeURIComponent(hook)}`);
