export * from './lock.errors.js';
