// Jest 30 in ESM mode: every @nestjs/* 12 package is ESM-only (see ../shared/STYLE.md).
// Run through `npm test`, which sets --experimental-vm-modules and finds or starts Redis.
const swc = {
  sourceMaps: 'inline',
  module: { type: 'es6' },
  jsc: {
    target: 'es2022',
    parser: { syntax: 'typescript', decorators: true },
    transform: { legacyDecorator: true, decoratorMetadata: true, useDefineForClassFields: false },
    keepClassNames: true,
  },
};

/** @type {import('jest').Config} */
export default {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  transform: { '^.+\\.ts$': ['@swc/jest', swc] },
  moduleNameMapper: {
    '^nestjs-redis-lock$': '<rootDir>/libs/lock/src/index.ts',
    '^nestjs-redis-lock/testing$': '<rootDir>/libs/lock/src/testing/index.ts',
    '^nestjs-redis-lock/(prometheus|otel|terminus|event-emitter)$': '<rootDir>/libs/lock/src/integrations/$1/index.ts',
    '^(\\.{1,2}/.*)\\.js$': '$1',
  },
  roots: ['<rootDir>/libs', '<rootDir>/apps', '<rootDir>/test'],
  testMatch: ['**/*.spec.ts', '**/*.e2e-spec.ts'],
  testTimeout: 30000,
  globalSetup: '<rootDir>/test/helpers/global-setup.ts',
};
