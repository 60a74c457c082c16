export * from './lock-options.interface.js';
export * from '../core/types.js';
export * from './with-lock-options.interface.js';
