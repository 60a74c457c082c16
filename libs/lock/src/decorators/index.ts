export * from './with-lock.decorator.js';
export * from './route-lock.decorator.js';
