export * from './lock-options.interface.js';
export * from './lock.interface.js';
export * from './with-lock-options.interface.js';
